import Foundation
import IOPSimulator
import TokenKeeperCore

/// What one fleet size cost, from a fresh storage directory.
private struct Fleet {
    var accounts: Int
    var importSeconds: Double
    var startToReady: Double
    var residentKiB: Int
    var databaseBytes: (keeper: Int, tokens: Int)

    var fileBytesPerAccount: Double { Double(databaseBytes.keeper + databaseBytes.tokens) / Double(accounts) }

    /// Resident bytes each account beyond `smaller`'s added.
    func residentBytesPerAccount(beyond smaller: Fleet) -> Double {
        Double(residentKiB - smaller.residentKiB) * 1024 / Double(accounts - smaller.accounts)
    }

    // MARK: - The growth table

    static let columns: [(title: String, width: Int)] = [
        ("accounts", 12), ("import s", 10), ("READY s", 9), ("resident MB", 13), ("keeper.db MB", 14),
        ("tokens.db MB", 14), ("file B/acct", 13), ("resident B/acct (vs the row above)", 0),
    ]

    static func row(_ cells: [String]) -> String {
        zip(cells, columns).map { cell, column in
            cell.padding(toLength: max(column.width, cell.count + 1), withPad: " ", startingAt: 0)
        }.joined()
    }

    func cells(after smaller: Fleet?) -> [String] {
        [
            Figure.format(accounts), Figure.format(importSeconds, decimals: 2),
            Figure.format(startToReady, decimals: 3), Figure.format(megabytes(kibibytes: residentKiB), decimals: 1),
            Figure.format(Double(databaseBytes.keeper) / 1e6, decimals: 1),
            Figure.format(Double(databaseBytes.tokens) / 1e6, decimals: 1),
            Figure.format(fileBytesPerAccount, decimals: 0),
            smaller.map { Figure.format(residentBytesPerAccount(beyond: $0), decimals: 0) } ?? "-",
        ]
    }
}

extension Benchmark {
    /// Section 4: import, start and memory for each fleet size; for the
    /// largest, idle cost, a drain beside it, and the commands that read it all.
    func measureScale() async throws {
        let largest = options.accounts
        let sizes = Set(options.growth.filter { $0 < largest } + [largest]).sorted()
        try await withRig("scale") { rig in
            let seeding = ContinuousClock.now
            let files = sizes.map { (path: rig.directory + "/fleet-\($0).jsonl", lines: $0) }
            try rig.seed(
                SellerBatch(count: largest, accessTokenLifetime: .seconds(7 * 86_400), withAccessToken: true),
                files: files)
            let due = try rig.seed(
                SellerBatch(count: options.drain, accessTokenLifetime: .seconds(600), withAccessToken: false),
                file: "due.jsonl")
            let seconds = Figure.format((ContinuousClock.now - seeding).seconds, decimals: 1)
            report.note("\(Figure.format(largest + options.drain)) sellers seeded, import lines written: \(seconds) s")
            // The default call rate (10 a second), as a new user runs it: the
            // idle minute is measured under it (a limit makes the scheduler plan
            // its lead); the drain beside the fleet lifts it by a reload.
            try rig.writeConfig(DaemonSettings(concurrency: options.concurrency))

            var fleets: [Fleet] = []
            report.note(Fleet.row(Fleet.columns.map(\.title)))
            for file in files {
                try rig.resetStorage()
                let imported = try await rig.importFile(file.path)
                try await withDaemon(rig) { daemon, startToReady in
                    let fleet = Fleet(
                        accounts: file.lines, importSeconds: imported.seconds, startToReady: startToReady.seconds,
                        residentKiB: daemon.residentKiB ?? 0, databaseBytes: rig.databaseBytes)
                    report.note(Fleet.row(fleet.cells(after: fleets.last)))
                    fleets.append(fleet)
                    if file.lines == largest {
                        report.record(fleetFigures(fleets))
                        try await measureLargestFleet(rig, daemon, due: due.path)
                    }
                }
            }
            for command in ["list", "status"] {
                let exit = try await rig.run([command, "--json"])
                report.record(
                    Figure(
                        name: "\(command) --json: peak resident", value: megabytes(kibibytes: exit.peakResidentKiB),
                        unit: " MB", decimals: 1, target: .below(100),
                        detail: "(\(Figure.format(exit.seconds, decimals: 2)) s)"))
            }
        }
    }

    /// Idle cost, then a drain of due sellers beside the fleet.
    private func measureLargestFleet(_ rig: Rig, _ daemon: ChildProcess, due: String) async throws {
        // What follows READY=1 (the comparison of tokens.db with keeper.db,
        // the first change poll) is start-up, not idling: measured apart.
        let cpuAtReady = daemon.cpuSeconds ?? 0
        let checked = try await rig.waitForDaemonLog("tokens.db checked against keeper.db", timeout: .seconds(300))
        report.record(
            Figure(
                name: "start-up work after READY (tokens.db check)",
                value: checked.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 },
                unit: " s", decimals: 2, target: nil,
                detail: "(\(Figure.format((daemon.cpuSeconds ?? 0) - cpuAtReady, decimals: 2)) s CPU)"))
        try await Task.sleep(for: .seconds(3))
        let cpuBefore = daemon.cpuSeconds ?? 0
        let requestsBefore = rig.simulator.counters.requests
        try await Task.sleep(for: .seconds(options.idleSeconds))
        let cpu = (daemon.cpuSeconds ?? 0) - cpuBefore
        report.record([
            Figure(
                name: "idle: CPU per minute", value: cpu * 60 / Double(max(options.idleSeconds, 1)), unit: " s",
                decimals: 3, target: .below(0.1),
                detail: "(\(Figure.format(cpu, decimals: 3)) s in \(options.idleSeconds) s)"),
            Figure(
                name: "idle: gateway calls", value: Double(rig.simulator.counters.requests - requestsBefore),
                target: .equal(0)),
        ])
        try rig.writeConfig(DaemonSettings(concurrency: options.concurrency, maxCallsPerSecond: 0))
        let applied = "refresh settings applied"
        let seen = rig.daemonLogCount(applied)
        kill(daemon.pid, SIGHUP)
        guard try await rig.waitForDaemonLog(applied, timeout: .seconds(30), after: seen) != nil else {
            throw BenchmarkError.daemonSilent("\"\(applied)\" after SIGHUP")
        }
        let drain = try await rig.importAndDrain(due, sellers: options.drain)
        report.record([
            Figure(
                name: "sellers due beside the fleet, rotated", value: Double(drain.rotations),
                target: .equal(Double(options.drain)), detail: "(\(drain))"),
            Figure(
                name: "resident after the drain", value: megabytes(kibibytes: daemon.residentKiB ?? 0), unit: " MB",
                decimals: 1, target: .atMost(150)),
        ])
        report.record(integrity(rig.simulator.counters))
    }

    /// The largest fleet's figures, the last of `fleets`.
    private func fleetFigures(_ fleets: [Fleet]) -> [Figure] {
        guard let largest = fleets.last else { return [] }
        let size = Figure.format(largest.accounts)
        var figures = [
            Figure(
                name: "import \(size) sellers (JSONL)", value: largest.importSeconds, unit: " s", decimals: 2,
                target: .atMost(15)),
            Figure(
                name: "start to READY=1, \(size) sellers", value: largest.startToReady, unit: " s", decimals: 3,
                target: .atMost(1.0)),
            Figure(
                name: "resident at READY, \(size) sellers", value: megabytes(kibibytes: largest.residentKiB),
                unit: " MB", decimals: 1, target: .atMost(150)),
            Figure(name: "keeper.db + tokens.db per account", value: largest.fileBytesPerAccount, unit: " B"),
        ]
        if let smallest = fleets.first, smallest.accounts < largest.accounts {
            figures.append(
                Figure(
                    name: "resident per added account", value: largest.residentBytesPerAccount(beyond: smallest),
                    unit: " B", detail: "(from \(Figure.format(smallest.accounts)) sellers)"))
        }
        return figures
    }
}
