import Foundation
import IOPSimulator
import SQLiteStore
import TokenKeeperCore

extension Benchmark {
    /// A start later than this after its planned time counts as late.
    static let punctual = 0.05
    static let punctualText = "\(Int(punctual * 1000)) ms"

    /// Section 5: 5,000 sellers enrolled together with 10-minute tokens need
    /// 500 s of calls at 10 calls/s, yet the default policy plans them all
    /// for the same half-minute 8 minutes later: only a scheduler that starts
    /// early keeps every token valid and every start on time. A shorter
    /// `--rate-minutes` watches the first part of the same scenario.
    func measureRateAwareScheduling() async throws {
        let sellers = 5_000
        let lifetime = Duration.seconds(600)
        let metrics = try await MetricsEndpoint.free()
        try await withRig("rate") { rig in
            try rig.writeConfig(DaemonSettings(maxCallsPerSecond: 10, minIntervalSeconds: 1, metricsPort: metrics.port))
            let batch = SellerBatch(count: sellers, accessTokenLifetime: lifetime, withAccessToken: true)
            let enrolled = try rig.seed(batch, file: "sellers.jsonl")
            try await rig.importFile(enrolled.path)
            let (expired, delays) = try await withDaemon(rig) { _, _ in
                let expired = try await watchExpiredTokens(rig, for: .seconds(options.rateMinutes * 60))
                return (expired, await metrics.startDelays())
            }
            let counters = rig.simulator.counters
            let needed = rig.loggedNumber("needed_calls_per_second")
            report.record([
                Figure(
                    name: "start-up warning: calls a second the sellers need", value: needed, unit: "/s",
                    decimals: 1, target: .atLeast(10),
                    detail: needed == nil ? "(no warning in the daemon's log)" : "(max_calls_per_second 10)"),
                Figure(
                    name: "starts later than planned (> \(Self.punctualText))",
                    value: delays.map { $0.count - $0.started(within: Self.punctual) }, target: .equal(0),
                    detail: Self.starts(delays)),
                Figure(
                    name: "largest start delay (bucket bound)", value: delays?.bound(ofQuantile: 1), unit: " s",
                    decimals: 3),
                Figure(
                    name: "refreshes after the access token expired",
                    value: Double(counters.refreshesAfterAccessExpiry), target: .equal(0), detail: "(at the gateway)"),
                Figure(
                    name: "expired tokens in tokens.db, worst sample", value: Double(expired.worst), target: .equal(0),
                    detail: "(\(expired.samples) samples, one every 5 s)"),
                Figure(
                    name: "refreshes", value: Double(counters.rotations),
                    detail: "(\(Figure.format(sellers)) sellers, 600 s tokens, 10 calls/s)"),
            ])
            report.record(integrity(counters))
        }
    }

    /// Section 6: how close to its planned time each refresh starts, with
    /// 2,000 sellers on tokens of 20 to 60 s (refreshed every 16 to 48 s, so
    /// their starts drift apart over the minute) and nothing holding the
    /// daemon back. The sellers are imported due at once; that first round
    /// measures throughput, not timing, so the figures are what the histogram
    /// gained over the `--precision-seconds` after it.
    func measurePrecision() async throws {
        let sellers = 2_000
        let metrics = try await MetricsEndpoint.free()
        try await withRig("precision") { rig in
            try rig.writeConfig(DaemonSettings(maxCallsPerSecond: 0, minIntervalSeconds: 1, metricsPort: metrics.port))
            let batch = SellerBatch(
                count: sellers, accessTokenLifetime: .seconds(20), withAccessToken: false, lifetimeSpread: .seconds(40))
            let enrolled = try rig.seed(batch, file: "sellers.jsonl")
            try await rig.importFile(enrolled.path)
            let delays: StartDelayHistogram? = try await withDaemon(rig) { _, _ in
                _ = try await rig.drain(sellers, after: 0)
                let before = await metrics.startDelays()
                try await Task.sleep(for: .seconds(options.precisionSeconds))
                guard let before, let after = await metrics.startDelays() else { return nil }
                return after.since(before)
            }
            let counters = rig.simulator.counters
            report.record([
                Figure(
                    name: "starts within \(Self.punctualText) of the plan",
                    value: delays.map { $0.count > 0 ? 100 * $0.started(within: Self.punctual) / $0.count : 0 },
                    unit: " %", decimals: 2, target: .atLeast(99),
                    detail: Self.starts(delays, in: "in \(options.precisionSeconds) s")),
                Figure(
                    name: "start delay, 99th percentile (bucket bound)", value: delays?.bound(ofQuantile: 0.99),
                    unit: " s", decimals: 3),
                Figure(
                    name: "refreshes after the access token expired",
                    value: Double(counters.refreshesAfterAccessExpiry)),
            ])
            report.record(integrity(counters))
        }
    }

    /// How many starts a figure from `delays` stands on, or why there is none.
    private static func starts(_ delays: StartDelayHistogram?, in window: String = "") -> String {
        guard let delays else { return "(no \(StartDelayHistogram.name) on /metrics)" }
        return "(of \(Figure.format(delays.count, decimals: 0)) starts\(window.isEmpty ? "" : " " + window))"
    }

    /// Counts, every 5 s for `duration`, the rows of tokens.db whose access
    /// token has expired, as a reader would see them; a note each minute.
    private func watchExpiredTokens(_ rig: Rig, for duration: Duration) async throws -> (worst: Int, samples: Int) {
        let connection = try SQLiteConnection(path: rig.tokensDatabase, flags: [.readOnly, .noMutex])
        try connection.setBusyTimeout(.seconds(1))
        let started = ContinuousClock.now
        var worst = 0
        var samples = 0
        while ContinuousClock.now - started < duration {
            try await Task.sleep(for: .seconds(5))
            let now = SystemWallClock().now().millisecondsSince1970
            let statement = try connection.cachedStatement("SELECT count(*) FROM tokens WHERE expire_time < ?")
            let expired = try statement.firstRow([now]) { $0.int(0) } ?? 0
            worst = max(worst, expired)
            samples += 1
            if samples % 12 == 0 {
                report.note(
                    "\(samples / 12) min: \(rig.simulator.counters.rotations) refreshes, \(expired) expired tokens now")
            }
        }
        return (worst, samples)
    }
}
