import IOPSimulator
import Logging
import Synchronization
import Testing
import TokenKeeperCore

/// Collects every log line with its metadata, for asserting on what was logged.
struct CapturingLogHandler: LogHandler {
    final class Store: Sendable {
        let lines = Mutex<[String]>([])
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(store: Store) {
        self.store = store
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        let line = "\(event.level) \(event.message) \(merged)"
        store.lines.withLock { $0.append(line) }
    }
}

@Suite("Logging")
struct LoggingTests {
    @Test func tokensNeverAppearInTheSimulatorsLogs() async throws {
        let store = CapturingLogHandler.Store()
        let clock = ManualWallClock()
        var configuration = SimulatorConfiguration(
            behavior: GatewayBehavior(apps: [SimulatorHarness.appKey: Secret(SimulatorHarness.secret)]),
            clock: clock, logger: Logger(label: "test", factory: { _ in CapturingLogHandler(store: store) }))
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

        let lines = store.lines.withLock { $0 }
        #expect(lines.count >= 4)
        #expect(lines.contains { $0.contains("rotated refresh token used again") })
        let secrets = [created.accessToken, created.refreshToken, refreshed.accessToken, refreshed.refreshToken]
            .compactMap { $0?.exposedValue } + [SimulatorHarness.secret]
        // Counted outside #expect, which would print the offending line.
        let leaks = secrets.filter { secret in lines.contains { $0.contains(secret) } }.count
        #expect(leaks == 0)
        let fingerprint = created.refreshToken!.fingerprint
        #expect(lines.contains { $0.contains(fingerprint) })
    }
}
