import IOPSimulator

extension Benchmark {
    /// Section 3: refreshes per second with nothing holding the daemon back
    /// (no latency, no rate limit), beside the disk's ceilings, while a reader
    /// looks tokens up in tokens.db.
    func measureThroughput(ceilings: DiskCeilings?) async throws {
        let sellers = options.due
        try await withRig("throughput") { rig in
            try rig.writeConfig(DaemonSettings(concurrency: options.concurrency, maxCallsPerSecond: 0))
            let due = try rig.seed(
                SellerBatch(count: sellers, accessTokenLifetime: .seconds(600), withAccessToken: false),
                file: "due.jsonl")
            let (drain, reads, cpu) = try await withDaemon(rig) { daemon, _ in
                let reader = TokensReader(path: rig.tokensDatabase, sellers: due.sellers)
                let drain: Drain
                let cpuBefore = daemon.cpuSeconds ?? 0
                do {
                    drain = try await rig.importAndDrain(due.path, sellers: sellers)
                } catch {
                    _ = try? await reader.stop()
                    throw error
                }
                return (drain, try await reader.stop(), (daemon.cpuSeconds ?? 0) - cpuBefore)
            }
            report.record([
                Figure(
                    name: "refreshes/s, no rate limit, concurrency \(options.concurrency)", value: drain.perSecond,
                    unit: "/s", target: .atLeast(5_000), detail: "(\(drain))"),
                // Steadier than the rate, which moves with whatever else the
                // two cores run; the 5,000/s is about 200 µs.
                Figure(
                    name: "daemon CPU per refresh", value: cpu / Double(sellers) * 1e6, unit: " µs",
                    detail:
                        "(\(Figure.format(cpu, decimals: 2)) s of the daemon's CPU for \(Figure.format(sellers)) refreshes)"
                ),
            ])
            // The gateway's side of the ceiling: the same simulator answering
            // a plain client (no store, no scheduler) as many at a time.
            let plain = try await clientRate(
                rig, calls: min(sellers, 20_000), workers: options.concurrency)
            report.record(
                Figure(
                    name: "a client calling \(options.concurrency) at a time, no store", value: plain, unit: "/s",
                    detail: "(tokenkeeper ÷ it: \(Figure.format(drain.perSecond / plain, decimals: 2))×)"))
            report.record(ceilings?.figures ?? [])
            report.record(readerFigures(reads))
            report.record(integrity(rig.simulator.counters))
        }
    }

    private func readerFigures(_ reads: TokensReader.Result) -> [Figure] {
        func milliseconds(_ name: String, _ fraction: Double, target: Target? = nil) -> Figure {
            Figure(
                name: "reader: \(name) lookup", value: reads.percentile(fraction), unit: " ms", decimals: 3,
                target: target)
        }
        var figures = [
            milliseconds("median", 0.5),
            milliseconds("99th percentile", 0.99, target: .below(1)),
            milliseconds("slowest", 1),
            Figure(
                name: "reader: SQLITE_BUSY", value: Double(reads.busy), target: .equal(0),
                detail: "(of \(Figure.format(reads.lookups)) lookups)"),
        ]
        if let failure = reads.firstFailure {
            figures.append(Figure(name: "reader: other errors", value: Double(reads.failures), detail: failure))
        }
        return figures
    }
}
