import IOPGateway
import IOPSimulator
import TokenKeeperCore

extension Benchmark {
    /// Section 2: with every answer taking 50 ms, `refresh.concurrency` 32
    /// must keep 32 calls in flight: 10,000 sellers due at once take
    /// 10,000 × 0.05 / 32 = 15.6 s at best. Beside it, a plain client calling
    /// the same gateway one call after another, and 32 calls at a time.
    func measureConcurrency() async throws {
        let latency = Duration.milliseconds(50)
        let concurrency = 32
        let sellers = 10_000
        try await withRig("concurrency", behavior: { $0.responseLatency = latency }) { rig in
            try rig.writeConfig(DaemonSettings(concurrency: concurrency, maxCallsPerSecond: 0))
            let due = try rig.seed(
                SellerBatch(count: sellers, accessTokenLifetime: .seconds(600), withAccessToken: false),
                file: "due.jsonl")
            let drain = try await withDaemon(rig) { _, _ in
                rig.simulator.resetCounters()
                return try await rig.importAndDrain(due.path, sellers: sellers)
            }
            let counters = rig.simulator.counters
            let bound = Double(sellers) * latency.seconds / Double(concurrency)
            report.record([
                Figure(
                    name: "\(Figure.format(sellers)) refreshes at 50 ms, concurrency \(concurrency)",
                    value: drain.seconds, unit: " s", decimals: 2, target: .atMost(1.2 * bound),
                    detail: "(at best \(Figure.format(bound, decimals: 2)) s; \(drain.rate))"),
                Figure(
                    name: "peak refreshes in flight at the gateway", value: Double(counters.peakConcurrentRefreshes),
                    target: .equal(Double(concurrency))),
            ])
            report.record(integrity(counters))

            let sequential = try await clientRate(rig, calls: 100, workers: 1)
            let parallel = try await clientRate(rig, calls: 100 * concurrency, workers: concurrency)
            report.record([
                Figure(name: "a client calling one after another", value: sequential, unit: "/s", decimals: 1),
                Figure(name: "a client calling \(concurrency) at a time", value: parallel, unit: "/s", decimals: 1),
                Figure(
                    name: "tokenkeeper ÷ one after another", value: drain.perSecond / sequential, unit: "×",
                    decimals: 1, target: .atLeast(10)),
                Figure(
                    name: "tokenkeeper ÷ \(concurrency) at a time", value: drain.perSecond / parallel, unit: "×",
                    decimals: 2, target: .atLeast(1.05)),
            ])
        }
    }

    /// Calls per second of one ``IOPGatewayClient`` whose `workers` tasks each
    /// refresh their share of `calls` freshly seeded sellers, one after another.
    func clientRate(_ rig: Rig, calls: Int, workers: Int) async throws -> Double {
        let refreshTokens = try rig.seedRefreshTokens(calls, accessTokenLifetime: .seconds(600))
        let client = IOPGatewayClient(
            configuration: GatewayConfiguration(
                baseURL: rig.simulator.baseURL!, appKey: Rig.appKey, appSecret: rig.secret, maxConnections: workers))
        let started = ContinuousClock.now
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    let share = stride(from: worker, to: calls, by: workers).map { refreshTokens[$0] }
                    group.addTask {
                        for refreshToken in share { _ = try await client.refresh(refreshToken: refreshToken) }
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            await client.shutdown()
            throw error
        }
        let seconds = (ContinuousClock.now - started).seconds
        await client.shutdown()
        return Double(calls) / seconds
    }
}
