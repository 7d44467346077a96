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
            let (drain, reads) = try await withDaemon(rig) { _, _ in
                let reader = TokensReader(path: rig.tokensDatabase, sellers: due.sellers)
                let drain: Drain
                do {
                    drain = try await rig.importAndDrain(due.path, sellers: sellers)
                } catch {
                    _ = try? await reader.stop()
                    throw error
                }
                return (drain, try await reader.stop())
            }
            report.record(
                Figure(
                    name: "refreshes/s, no rate limit, concurrency \(options.concurrency)", value: drain.perSecond,
                    unit: "/s", target: .atLeast(5_000), detail: "(\(drain))"))
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
