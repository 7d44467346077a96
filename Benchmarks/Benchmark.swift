import Foundation
import IOPSimulator

// tokenkeeper's benchmark (issue 8): the release binary against IOPSimulator
// over loopback HTTP.
//
//   swift build -c release --product Benchmarks && swift build -c release --product tokenkeeper
//   .build/release/Benchmarks [--only disk,throughput] [--accounts 1000000] … (--help lists them)
//
// Every figure is one line: name, value, target, PASS or FAIL ("info" when it
// has no target, "n/a" when the daemon does not expose it); the targets are
// repeated in a summary at the end.
#if canImport(Glibc)
import Glibc
#endif

@main
struct Benchmark {
    let options: BenchmarkOptions
    let report = Report()
    /// A scratch directory of this run; each section works in a folder of its own below it.
    let root: String

    static func main() async {
        let options: BenchmarkOptions
        do throws(OptionError) {
            options = try BenchmarkOptions(CommandLine.arguments)
        } catch {
            switch error {
            case .help:
                print(BenchmarkOptions.usage)
                return
            case .invalid(let problem):
                print("\(problem)\n\n\(BenchmarkOptions.usage)")
                exit(2)
            }
        }
        guard FileManager.default.isExecutableFile(atPath: Rig.binary) else {
            print("no tokenkeeper at \(Rig.binary): swift build -c release --product tokenkeeper")
            exit(1)
        }
        let benchmark = Benchmark(options: options, root: options.directory + "/tokenkeeper-bench-\(getpid())")
        do {
            try await benchmark.run()
        } catch {
            print("benchmark failed: \(error)")
            exit(1)
        }
    }

    func run() async throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        print("tokenkeeper benchmark: \(Rig.binary), scratch \(root)")
        print("options: " + CommandLine.arguments.dropFirst().joined(separator: " "))
        print("sections: " + Section.allCases.filter(options.runs).map(\.rawValue).joined(separator: ", "))

        // The throughput section prints the disk's ceilings beside its own figure.
        let ceilings = options.runs(.disk) || options.runs(.throughput) ? try DiskCeilings.measure(in: root) : nil
        for section in Section.allCases where options.runs(section) {
            report.beginSection(section.title, label: section.rawValue)
            do {
                try await measure(section, ceilings: ceilings)
            } catch {
                report.note("the section stopped: \(error)")
            }
        }
        report.printSummary()
    }

    private func measure(_ section: Section, ceilings: DiskCeilings?) async throws {
        switch section {
        case .disk: report.record(ceilings?.figures ?? [])
        case .concurrency: try await measureConcurrency()
        case .throughput: try await measureThroughput(ceilings: ceilings)
        case .scale: try await measureScale()
        case .rate: try await measureRateAwareScheduling()
        case .precision: try await measurePrecision()
        case .proxy: try await measureProxy()
        case .postgres: try await measurePostgres()
        }
    }

    // MARK: - Shared by the sections

    /// Runs `body` with a fresh rig, shut down afterwards whatever happens.
    func withRig<Result>(
        _ name: String, behavior: (inout GatewayBehavior) -> Void = { _ in }, _ body: (Rig) async throws -> Result
    ) async throws -> Result {
        let rig = try await Rig.start(name, in: root, behavior: behavior)
        do {
            let result = try await body(rig)
            await rig.shutdown()
            return result
        } catch {
            await rig.shutdown()
            throw error
        }
    }

    /// Starts the rig's daemon, runs `body` with it and its time from start to
    /// READY=1, then stops it with SIGTERM and waits for it, whatever happens.
    func withDaemon<Result>(_ rig: Rig, _ body: (ChildProcess, Duration) async throws -> Result) async throws
        -> Result
    {
        let (daemon, startToReady) = try await rig.startDaemon()
        let result: Result
        do {
            result = try await body(daemon, startToReady)
        } catch {
            _ = try? await daemon.terminate()
            throw error
        }
        let exit = try await daemon.terminate()
        if !exit.succeeded {
            report.note("the daemon exited with \(exit.status) after SIGTERM:\n\(rig.logTail("daemon"))")
        }
        return result
    }

    /// What a correct client never does, as the gateway saw it.
    func integrity(_ counters: SimulatorCounters) -> [Figure] {
        [
            Figure(
                name: "refresh tokens sent again after rotation", value: Double(counters.refreshTokenReuses),
                target: .equal(0)),
            Figure(
                name: "overlapping refreshes of one seller", value: Double(counters.overlappingRefreshes),
                target: .equal(0)),
        ]
    }
}

extension Section {
    var title: String {
        switch self {
        case .disk: "1. Disk commit ceilings (WAL, synchronous=FULL)"
        case .concurrency: "2. Concurrency honoured"
        case .throughput: "3. Throughput, with a reader of tokens.db"
        case .scale: "4. A million sellers"
        case .rate: "5. Rate-aware scheduling"
        case .precision: "6. Precision of start times"
        case .proxy: "7. Signing proxy overhead"
        case .postgres: "8. PostgreSQL: refreshes with one node and two, a million at start"
        }
    }
}

/// Megabytes (10^6 bytes, as the targets are written) from KiB.
func megabytes(kibibytes: Int) -> Double {
    Double(kibibytes) * 1024 / 1e6
}
