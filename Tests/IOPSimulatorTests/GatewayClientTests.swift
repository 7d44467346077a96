import IOPGateway
import IOPSimulator
import Logging
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The real client against the simulator: the two were written apart from
/// each other and must agree on the wire.
@Suite("IOPGatewayClient against the simulator")
struct GatewayClientTests {
    private static func withClient(
        secret: String = SimulatorHarness.secret, maxConnections: Int = 8,
        _ body: (IOPGatewayClient, SimulatorHarness) async throws -> Void
    ) async throws {
        try await SimulatorHarness.run { h in
            let client = IOPGatewayClient(
                configuration: GatewayConfiguration(
                    baseURL: h.gateway.baseURL, appKey: SimulatorHarness.appKey, appSecret: Secret(secret),
                    requestTimeout: .seconds(10), maxConnections: maxConnections),
                clock: h.clock, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            do {
                try await body(client, h)
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
    }

    @Test func theClientEnrollsRotatesAndSeesARevocation() async throws {
        try await Self.withClient { client, h in
            h.simulator.addSeller(sellerID: "1001")
            let created = try await client.createToken(code: try h.simulator.issueAuthorizationCode(for: "1001"))
            #expect(created.sellerID == "1001")
            #expect(created.refreshToken == h.simulator.currentRefreshToken(for: "1001"))
            #expect(created.accessTokenLifetime == .seconds(600))
            #expect(created.refreshTokenValidTime == ManualWallClock.start + .seconds(3600))
            #expect(created.gatewayDate == ManualWallClock.start)

            h.clock.advance(by: .seconds(60))
            let rotated = try await client.refresh(refreshToken: try #require(created.refreshToken))
            #expect(rotated.refreshToken == h.simulator.currentRefreshToken(for: "1001"))
            #expect(rotated.expireTime == h.clock.now() + .seconds(600))
            #expect(rotated.refreshTokenLifetime == .seconds(3540))
            #expect(!rotated.isFinalGrant)

            try h.simulator.revoke(sellerID: "1001")
            let rotatedToken = try #require(rotated.refreshToken)
            await #expect(throws: GatewayFailure.self) {
                do throws(GatewayFailure) {
                    _ = try await client.refresh(refreshToken: rotatedToken)
                } catch {
                    #expect(error.failureClass == .accountRejected)
                    #expect(error.code == "IllegalRefreshToken")
                    throw error
                }
            }
            let counters = h.simulator.counters
            #expect(counters.refreshTokenReuses == 0)
            #expect(counters.overlappingRefreshes == 0)
        }
    }

    @Test func aWrongSecretIsAConfigurationFailure() async throws {
        try await Self.withClient(secret: "wrong") { client, h in
            let token = try h.enrolledSeller().refreshToken
            do throws(GatewayFailure) {
                _ = try await client.refresh(refreshToken: token)
                Issue.record("a wrong secret was accepted")
            } catch {
                #expect(error.failureClass == .configuration)
                #expect(error.code == "IncompleteSignature")
            }
        }
    }

    @Test(arguments: FaultKind.withoutEffect.filter { $0 != .slowResponse })
    func everyFaultWithoutEffectIsRetryableForTheClient(kind: FaultKind) async throws {
        try await Self.withClient { client, h in
            let token = try h.enrolledSeller().refreshToken
            h.simulator.injectFaults(kind)
            do throws(GatewayFailure) {
                _ = try await client.refresh(refreshToken: token)
                Issue.record("\(kind) was not reported as a failure")
            } catch {
                #expect(error.failureClass.isRetryable, "\(kind) → \(error.code)")
                if kind == .throttled { #expect(error.failureClass == .throttled(retryAfter: .seconds(1))) }
            }
            h.clock.advance(by: .seconds(2))
            let retry = try await client.refresh(refreshToken: token)
            #expect(retry.sellerID == "1001")
        }
    }

    /// `refresh.concurrency` calls go out together, not AsyncHTTPClient's
    /// default of 8 per host; a new limit (SIGHUP) takes effect for new calls.
    @Test func callsGoOutAsManyAtOnceAsTheConnectionLimitSays() async throws {
        try await Self.withClient(maxConnections: 32) { client, h in
            // Long enough that every connection is open and busy at once, even
            // on a loaded machine; 64 calls are two rounds of 32.
            h.simulator.updateBehavior { $0.responseLatency = .seconds(1) }
            let sellers = (0..<64).map { "77\($0)" }
            for seller in sellers { try h.enrolledSeller(seller) }
            func burst(_ count: Int) async {
                let tokens = sellers.prefix(count).compactMap { h.simulator.currentRefreshToken(for: $0) }
                await withTaskGroup(of: Void.self) { group in
                    for token in tokens {
                        group.addTask { _ = try? await client.refresh(refreshToken: token) }
                    }
                }
            }

            await burst(64)
            #expect(h.simulator.counters.rotations == 64)
            #expect(h.simulator.counters.peakConcurrentRefreshes == 32)

            var smaller = client.configuration
            smaller.maxConnections = 4
            client.update(configuration: smaller)
            #expect(client.maxConnections == 4)
            h.simulator.resetCounters()
            await burst(8)
            #expect(h.simulator.counters.rotations == 8)
            #expect(h.simulator.counters.peakConcurrentRefreshes == 4)
        }
    }
}
