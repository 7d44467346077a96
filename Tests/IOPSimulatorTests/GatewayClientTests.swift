import IOPGateway
import Logging
import IOPSimulator
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The real client against the simulator: the two were written apart from
/// each other and must agree on the wire.
@Suite("IOPGatewayClient against the simulator")
struct GatewayClientTests {
    private static func withClient(
        secret: String = SimulatorHarness.secret, _ body: (IOPGatewayClient, SimulatorHarness) async throws -> Void
    ) async throws {
        try await SimulatorHarness.run { h in
            let client = IOPGatewayClient(
                configuration: GatewayConfiguration(
                    baseURL: h.gateway.baseURL, appKey: SimulatorHarness.appKey, appSecret: Secret(secret),
                    requestTimeout: .seconds(10)),
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
}
