// tokenkeeper's benchmark: the release binary against IOPSimulator.
//
//   swift build -c release && .build/release/Benchmarks [--accounts 100000] [--idle-seconds 60] [--due 20000]
//
// Prints: the time to import the accounts from JSON Lines, the time from
// start to READY=1, the daemon's resident memory, the CPU it uses in a minute
// with nothing due, and refreshes per second with no rate limit.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IOPSimulator
import TokenKeeperCore

struct Options {
    var accounts = 100_000
    var idleSeconds = 60
    var due = 20_000
    var concurrency = 16

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next().flatMap(Int.init) else { fatalError("\(flag) needs a number") }
            switch flag {
            case "--accounts": accounts = value
            case "--idle-seconds": idleSeconds = value
            case "--due": due = value
            case "--concurrency": concurrency = value
            default: fatalError("unknown option \(flag)")
            }
        }
    }
}

struct ProcessStats {
    static func rssKiB(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    /// User plus system CPU time, in seconds.
    static func cpuSeconds(_ pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return -1 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

func binaryPath() -> String {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("tokenkeeper").path
}

@discardableResult
func runTokenKeeper(_ arguments: [String], environment: [String: String] = [:], stdinFile: String? = nil) throws
    -> (Process, Pipe)
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binaryPath())
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { _, new in new }
    process.environment = env
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    if let stdinFile { process.standardInput = FileHandle(forReadingAtPath: stdinFile) }
    try process.run()
    return (process, errors)
}

func report(_ name: String, _ value: String) {
    print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + value)
}

@main
struct Benchmark {
    static func main() async throws {
        let options = Options(CommandLine.arguments)

        let secret = Secret("benchmark-secret")
        let simulator = IOPSimulator(appKey: "777000", appSecret: secret)
        simulator.updateBehavior { $0.recordsIssuedTokens = false }
        let address = try await simulator.start()
        let root = NSTemporaryDirectory() + "tokenkeeper-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let storage = root + "/storage"
        let config = root + "/config.yaml"
        try """
            gateway:
              url: "\(address.baseURL)"
            app:
              key: "777000"
            storage:
              directory: "\(storage)"
            refresh:
              max_calls_per_second: 0
              concurrency: \(options.concurrency)
            log:
              level: warning
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let environment = ["TOKENKEEPER_APP_SECRET": secret.exposedValue]
        print("tokenkeeper benchmark: \(options.accounts) accounts, release binary \(binaryPath())")

        // 1. Import: accounts with week-long access tokens (nothing due), plus
        //    `due` accounts without an access token (due at once) in a second file.
        let idleFile = root + "/idle.jsonl"
        let dueFile = root + "/due.jsonl"
        var idleLines = ""
        var dueLines = ""
        idleLines.reserveCapacity(options.accounts * 260)
        for index in 0..<(options.accounts + options.due) {
            let sellerID = String(format: "%09d", index)
            let isDue = index >= options.accounts
            simulator.addSeller(
                sellerID: sellerID, nick: "shop-\(index)", accessTokenLifetime: .seconds(isDue ? 600 : 7 * 86_400))
            let pair = try simulator.seedTokens(for: sellerID)
            var line = "{\"seller_id\":\"\(sellerID)\",\"refresh_token\":\"\(pair.refreshToken.exposedValue)\","
                + "\"refresh_token_valid_time\":\(pair.refreshTokenValidTime.millisecondsSince1970),\"user_nick\":\"shop-\(index)\""
            if !isDue {
                line += ",\"access_token\":\"\(pair.accessToken.exposedValue)\",\"expire_time\":\(pair.expireTime.millisecondsSince1970)"
            }
            line += "}\n"
            if isDue { dueLines += line } else { idleLines += line }
        }
        try idleLines.write(toFile: idleFile, atomically: true, encoding: .utf8)
        try dueLines.write(toFile: dueFile, atomically: true, encoding: .utf8)
        idleLines = ""
        let importStart = Date()
        let (importer, _) = try runTokenKeeper(["import", "--file", idleFile, "--config", config], environment: environment)
        importer.waitUntilExit()
        let importSeconds = Date().timeIntervalSince(importStart)
        precondition(importer.terminationStatus == 0, "import failed")
        report("import \(options.accounts) JSONL lines", String(format: "%.2f s (%.0f lines/s)", importSeconds, Double(options.accounts) / importSeconds))

        // 2. Start to READY=1, memory, idle CPU.
        let listener = try NotifySocket(path: root + "/notify.sock")
        let started = ContinuousClock.now
        let (daemon, _) = try runTokenKeeper(
            ["run", "--config", config], environment: environment.merging(["NOTIFY_SOCKET": listener.path]) { _, b in b })
        var ready: ContinuousClock.Instant?
        while ready == nil && daemon.isRunning {
            ready = listener.firstArrival(of: "READY=1")
            if ready == nil { try await Task.sleep(for: .milliseconds(5)) }
        }
        guard let ready else { fatalError("the daemon exited before READY=1") }
        let startup = ready - started
        report(
            "start to READY=1 (\(options.accounts) accounts)",
            String(format: "%.3f s", Double(startup.components.attoseconds) / 1e18 + Double(startup.components.seconds)))
        report("resident memory at READY", "\(ProcessStats.rssKiB(daemon.processIdentifier) / 1024) MiB")
        try await Task.sleep(for: .seconds(3))
        let cpuBefore = ProcessStats.cpuSeconds(daemon.processIdentifier)
        let requestsBefore = simulator.counters.requests
        try await Task.sleep(for: .seconds(options.idleSeconds))
        let cpuIdle = ProcessStats.cpuSeconds(daemon.processIdentifier) - cpuBefore
        report("CPU used in \(options.idleSeconds) s with nothing due", String(format: "%.3f s (%.3f%% of one core)", cpuIdle, cpuIdle / Double(options.idleSeconds) * 100))
        report("gateway calls while idle", "\(simulator.counters.requests - requestsBefore)")
        report("resident memory after idle", "\(ProcessStats.rssKiB(daemon.processIdentifier) / 1024) MiB")

        // 3. Refreshes per second, no rate limit: import `due` accounts beside
        //    the running daemon; it picks them up and drains them.
        let rotationsBefore = simulator.counters.rotations
        let (dueImporter, _) = try runTokenKeeper(["import", "--file", dueFile, "--config", config], environment: environment)
        dueImporter.waitUntilExit()
        let drainStart = Date()
        var firstRotation: Date?
        while simulator.counters.rotations - rotationsBefore < options.due {
            if firstRotation == nil && simulator.counters.rotations > rotationsBefore { firstRotation = Date() }
            try await Task.sleep(for: .milliseconds(20))
            if Date().timeIntervalSince(drainStart) > 600 { break }
        }
        let drained = simulator.counters.rotations - rotationsBefore
        let drainSeconds = Date().timeIntervalSince(firstRotation ?? drainStart)
        report(
            "refreshes/s, no rate limit, concurrency \(options.concurrency)",
            String(format: "%.0f (%d in %.2f s)", Double(drained) / drainSeconds, drained, drainSeconds))
        report("resident memory after draining", "\(ProcessStats.rssKiB(daemon.processIdentifier) / 1024) MiB")
        report("simulator: reuses / overlapping", "\(simulator.counters.refreshTokenReuses) / \(simulator.counters.overlappingRefreshes)")

        let stopAt = Date()
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        report("SIGTERM to exit", String(format: "%.3f s (exit %d)", Date().timeIntervalSince(stopAt), daemon.terminationStatus))
        await simulator.shutdown()
    }
}
