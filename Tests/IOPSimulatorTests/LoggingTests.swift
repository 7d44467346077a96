import IOPSimulator
import Logging
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@Suite("Logging")
struct LoggingTests {
    @Test func tokensNeverAppearInTheSimulatorsLogs() async throws {
        let recorder = LogRecorder()
        let clock = ManualWallClock()
        var configuration = SimulatorConfiguration(
            behavior: GatewayBehavior(apps: [SimulatorHarness.appKey: Secret(SimulatorHarness.secret)]),
            clock: clock, logger: recorder.logger())
        configuration.logger.logLevel = .trace
        let simulator = IOPSimulator(configuration: configuration)
        let address = try await simulator.start()
        let gateway = RawGateway(
            baseURL: address.baseURL, appKey: SimulatorHarness.appKey, secret: SimulatorHarness.secret, clock: clock)

        simulator.addSeller(sellerID: "1001")
        let code = try simulator.issueAuthorizationCode(for: "1001")
        let created = try await gateway.create(code: code)
        let refreshed = try await gateway.refresh(try #require(created.refreshToken))
        _ = try await gateway.refresh(try #require(created.refreshToken))  // a reuse, logged as a warning
        simulator.injectFaults(.malformedJSON)
        _ = try await gateway.refresh(try #require(refreshed.refreshToken))
        await simulator.shutdown()

        let lines = recorder.rendered
        #expect(lines.count >= 4)
        #expect(lines.contains { $0.contains("rotated refresh token used again") })
        let secrets =
            [created.accessToken, created.refreshToken, refreshed.accessToken, refreshed.refreshToken]
            .compactMap { $0?.exposedValue } + [SimulatorHarness.secret]
        // Counted outside #expect, which would print the offending line.
        let leaks = secrets.filter { secret in lines.contains { $0.contains(secret) } }.count
        #expect(leaks == 0)
        let fingerprint = created.refreshToken!.fingerprint
        #expect(lines.contains { $0.contains(fingerprint) })
    }
}
