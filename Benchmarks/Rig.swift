import Foundation
import IOPSimulator
import TokenKeeperCore

/// The `refresh:` and `metrics:` keys a section sets; nil keeps the daemon's default.
struct DaemonSettings {
    var concurrency: Int?
    var maxCallsPerSecond: Double?
    /// `refresh.min_interval_seconds`: the sections whose tokens live seconds,
    /// not days, lower it from its 60 s default, which would hold a refresh
    /// back past the token's expiry.
    var minIntervalSeconds: Int?
    var metricsPort: Int?
    /// Keeps the accounts in this PostgreSQL database rather than SQLite.
    var postgres: PostgresTarget?
}

/// The sellers of one import file: how they are seeded at the simulator and
/// what their lines carry.
struct SellerBatch {
    var count: Int
    /// The access token's lifetime at the simulator, for the seeded pair and
    /// every rotation.
    var accessTokenLifetime: Duration
    /// Without an access token in its line a seller is due at once.
    var withAccessToken: Bool
    /// Spreads the lifetimes evenly from ``accessTokenLifetime`` to this much
    /// more (in 40 steps), so that sellers enrolled together drift apart.
    var lifetimeSpread = Duration.zero

    /// The lifetime of seller number `position` of the batch.
    func lifetime(_ position: Int) -> Duration {
        accessTokenLifetime + .milliseconds(lifetimeSpread.wholeMilliseconds * Int64(position % 41) / 40)
    }
}

/// One section's world: its own simulator, a scratch directory with the
/// storage and the configuration, and the tokenkeeper binary to run there.
final class Rig {
    let simulator: IOPSimulator
    let directory: String
    let secret: Secret
    var storage: String { directory + "/storage" }
    var configPath: String { directory + "/config.yaml" }
    var tokensDatabase: String { storage + "/tokens.db" }
    private var nextSellerIndex = 0

    /// The release `tokenkeeper` beside this benchmark.
    static let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("tokenkeeper").path
    static let appKey = "777000"

    /// Starts a simulator that keeps no token log (flat memory for a million
    /// sellers) and makes `root/name`.
    static func start(_ name: String, in root: String, behavior: (inout GatewayBehavior) -> Void = { _ in })
        async throws -> Rig
    {
        let secret = Secret("benchmark-secret")
        let simulator = IOPSimulator(appKey: appKey, appSecret: secret)
        simulator.updateBehavior {
            $0.recordsIssuedTokens = false
            behavior(&$0)
        }
        try await simulator.start()
        let directory = root + "/" + name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return Rig(simulator: simulator, directory: directory, secret: secret)
    }

    private init(simulator: IOPSimulator, directory: String, secret: Secret) {
        self.simulator = simulator
        self.directory = directory
        self.secret = secret
    }

    func shutdown() async {
        await simulator.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Empties the storage directory: the next import or start begins from nothing.
    func resetStorage() throws {
        if FileManager.default.fileExists(atPath: storage) { try FileManager.default.removeItem(atPath: storage) }
    }

    func writeConfig(_ settings: DaemonSettings) throws {
        var refresh = ["change_poll_seconds: 1"]
        if let value = settings.concurrency { refresh.append("concurrency: \(value)") }
        if let value = settings.maxCallsPerSecond { refresh.append("max_calls_per_second: \(value)") }
        if let value = settings.minIntervalSeconds { refresh.append("min_interval_seconds: \(value)") }
        var yaml = """
            gateway:
              url: "\(simulator.baseURL!)"
            app:
              key: "\(Self.appKey)"
            storage:
              directory: "\(storage)"
            \(settings.postgres.map(Self.postgresKeys) ?? "")refresh:
            \(refresh.map { "  " + $0 }.joined(separator: "\n"))
            log:
              level: notice

            """
        if let port = settings.metricsPort { yaml += "metrics:\n  listen: \"127.0.0.1:\(port)\"\n" }
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    private static func postgresKeys(_ target: PostgresTarget) -> String {
        """
          backend: postgres
          postgres:
            url: "\(target.url)"
            password_file: "\(target.passwordFile)"
            tls: disable

        """
    }

    // MARK: - Sellers

    /// The seller id of seller number `index`: nine digits, zero-padded.
    static func sellerID(_ index: Int) -> String {
        let digits = String(index)
        return String(repeating: "0", count: max(0, 9 - digits.count)) + digits
    }

    /// Seeds `batch` at the simulator and writes its import lines; each file
    /// gets the first `lines` of them (one pass serves several sizes).
    /// - Returns: The sellers' numbers (see ``sellerID(_:)``).
    @discardableResult
    func seed(_ batch: SellerBatch, files: [(path: String, lines: Int)]) throws -> Range<Int> {
        let sellers = nextSellerIndex..<(nextSellerIndex + batch.count)
        nextSellerIndex = sellers.upperBound
        var writers = try files.map { try JSONLinesWriter(path: $0.path, lines: $0.lines) }
        for (position, index) in sellers.enumerated() {
            let pair = try seedPair(index, batch: batch, position: position)
            let line = Self.importLine(pair, nick: "shop-\(index)", withAccessToken: batch.withAccessToken)
            for writer in writers.indices { try writers[writer].append(line) }
        }
        for writer in writers.indices { try writers[writer].close() }
        return sellers
    }

    /// ``seed(_:files:)`` into one file named `name` in the rig's directory.
    func seed(_ batch: SellerBatch, file name: String) throws -> (path: String, sellers: Range<Int>) {
        let path = directory + "/" + name
        return (path, try seed(batch, files: [(path, batch.count)]))
    }

    /// Seeds `count` sellers for a client of the benchmark's own: their refresh tokens.
    func seedRefreshTokens(_ count: Int, accessTokenLifetime: Duration) throws -> [Secret] {
        let batch = SellerBatch(count: count, accessTokenLifetime: accessTokenLifetime, withAccessToken: false)
        let first = nextSellerIndex
        nextSellerIndex += count
        return try (0..<count).map { try seedPair(first + $0, batch: batch, position: $0).refreshToken }
    }

    private func seedPair(_ index: Int, batch: SellerBatch, position: Int) throws -> IssuedTokenPair {
        let sellerID = Self.sellerID(index)
        simulator.addSeller(sellerID: sellerID, nick: "shop-\(index)", accessTokenLifetime: batch.lifetime(position))
        return try simulator.seedTokens(for: sellerID)
    }

    /// A line of `tokenkeeper import --file`, in the gateway's field names.
    private static func importLine(_ pair: IssuedTokenPair, nick: String, withAccessToken: Bool) -> String {
        var line =
            "{\"seller_id\":\"\(pair.sellerID)\",\"refresh_token\":\"\(pair.refreshToken.exposedValue)\","
            + "\"refresh_token_valid_time\":\(pair.refreshTokenValidTime.millisecondsSince1970),"
            + "\"user_nick\":\"\(nick)\""
        if withAccessToken {
            line += ",\"access_token\":\"\(pair.accessToken.exposedValue)\","
            line += "\"expire_time\":\(pair.expireTime.millisecondsSince1970),"
            // As a saved /auth/token/create answer carries it.
            line += "\"expires_in\":\(pair.accessTokenLifetime.components.seconds)"
        }
        return line + "}\n"
    }

    // MARK: - tokenkeeper

    /// Runs `tokenkeeper ARGUMENTS --config CONFIG`; its stderr goes to `NAME.log` in the rig's directory.
    func spawn(_ arguments: [String], log name: String, environment extra: [String: String] = [:]) throws
        -> ChildProcess
    {
        var environment = ProcessInfo.processInfo.environment
        environment["TOKENKEEPER_APP_SECRET"] = secret.exposedValue
        environment.merge(extra) { _, new in new }
        return try ChildProcess(
            executable: Self.binary, arguments: arguments + ["--config", configPath], environment: environment,
            logFile: directory + "/\(name).log")
    }

    /// Runs `tokenkeeper import --file PATH` to its end.
    /// - Throws: When the import fails, with the end of its log.
    @discardableResult
    func importFile(_ path: String) async throws -> ChildProcess.Exit {
        try await succeeded(try startImport(path), name: "import")
    }

    func startImport(_ path: String) throws -> ChildProcess {
        try spawn(["import", "--file", path], log: "import")
    }

    /// Runs a command to its end (`list --json`, `status --json`).
    func run(_ arguments: [String]) async throws -> ChildProcess.Exit {
        let name = arguments.first ?? "command"
        return try await succeeded(try spawn(arguments, log: name), name: name)
    }

    /// Waits for the command `name` to end.
    /// - Throws: When it fails, with the end of its log.
    @discardableResult
    func succeeded(_ process: ChildProcess, name: String) async throws -> ChildProcess.Exit {
        let exit = try await process.waitForExit()
        guard exit.succeeded else { throw BenchmarkError.commandFailed(name, exit.status, logTail(name)) }
        return exit
    }

    /// Starts `tokenkeeper run` and waits for READY=1 on a notify socket.
    /// - Returns: The daemon and the time from its start to READY=1.
    /// - Parameter name: Its log's name (`NAME.log`), and its notify socket's;
    ///   daemons beside each other (several nodes on PostgreSQL) each have one.
    func startDaemon(name: String = "daemon") async throws -> (daemon: ChildProcess, startToReady: Duration) {
        let listener = try NotifySocket(path: directory + "/\(name).sock")
        let daemon = try spawn(["run"], log: name, environment: ["NOTIFY_SOCKET": listener.path])
        while true {
            if let ready = listener.firstArrival(of: "READY=1") { return (daemon, ready - daemon.started) }
            guard daemon.isRunning else {
                throw BenchmarkError.commandFailed("run", daemon.exit!.status, logTail(name))
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Waits until more than `seen` lines of the daemon's log hold `line` (bounded by `timeout`);
    /// returns how long that took, or nil if it never came.
    func waitForDaemonLog(_ line: String, timeout: Duration, after seen: Int = 0) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if daemonLogCount(line) > seen { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    /// How many lines of the daemon's log contain `text`.
    func daemonLogCount(_ text: String) -> Int {
        let log = (try? String(contentsOfFile: directory + "/daemon.log", encoding: .utf8)) ?? ""
        return log.split(separator: "\n").count { $0.contains(text) }
    }

    /// The first number the daemon's log gives for the metadata key `key`
    /// (`key=12.5`), if any line has it.
    func loggedNumber(_ key: String) -> Double? {
        let text = (try? String(contentsOfFile: directory + "/daemon.log", encoding: .utf8)) ?? ""
        guard let found = text.range(of: key + "=") else { return nil }
        let digits = text[found.upperBound...].prefix { $0.isNumber || $0 == "." }
        return Double(digits)
    }

    func logTail(_ name: String) -> String {
        let text = (try? String(contentsOfFile: directory + "/\(name).log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(5).joined(separator: "\n")
    }

    /// keeper.db and tokens.db with their write-ahead logs, in bytes.
    var databaseBytes: (keeper: Int, tokens: Int) {
        func size(_ name: String) -> Int {
            ["", "-wal"].reduce(0) { total, suffix in
                let attributes = try? FileManager.default.attributesOfItem(atPath: storage + "/" + name + suffix)
                return total + ((attributes?[.size] as? NSNumber)?.intValue ?? 0)
            }
        }
        return (size("keeper.db"), size("tokens.db"))
    }
}

enum BenchmarkError: Error, CustomStringConvertible {
    /// A tokenkeeper command's name, exit status and last lines of stderr.
    case commandFailed(String, Int32, String)
    /// The daemon did not log what a step waits for.
    case daemonSilent(String)

    var description: String {
        switch self {
        case .commandFailed(let name, let status, let log): "tokenkeeper \(name) exited with \(status):\n\(log)"
        case .daemonSilent(let what): "the daemon did not log \(what) in time"
        }
    }
}

/// Writes lines to a file in large chunks, stopping after `lines` of them.
private struct JSONLinesWriter {
    private let handle: FileHandle
    private var remaining: Int
    private var buffer = ""

    init(path: String, lines: Int) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw POSIXError(.EACCES) }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        remaining = lines
        buffer.reserveCapacity(1 << 20)
    }

    mutating func append(_ line: String) throws {
        guard remaining > 0 else { return }
        remaining -= 1
        buffer += line
        if buffer.utf8.count >= 1 << 20 { try flush() }
    }

    mutating func close() throws {
        try flush()
        try handle.close()
    }

    private mutating func flush() throws {
        try handle.write(contentsOf: Data(buffer.utf8))
        buffer.removeAll(keepingCapacity: true)
    }
}
