import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real PostgreSQL server for tests, from the distribution's `postgresql`
/// package: a fresh cluster in a scratch directory, listening on a free port
/// of 127.0.0.1 and on a Unix socket in that directory.
///
/// The superuser reaches the server over the Unix socket without a password
/// (`trust`); every role connecting over TCP must give its password
/// (`scram-sha-256`), as the daemon does in production. The server is stopped
/// and its directory removed when the value is released.
///
/// PostgreSQL refuses to run as root: under root the cluster belongs to the
/// user `nobody`, and `initdb` and `pg_ctl` run as that user through
/// `setpriv` (or `runuser`). `psql` runs as the calling user.
public final class PostgresServer: Sendable {
    /// The TCP address the server listens on.
    public let host = "127.0.0.1"
    /// The TCP port, the same across ``stop(mode:)`` and ``start()``.
    public let port: Int
    /// The directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    public let socketDirectory: String
    /// The cluster's data directory.
    public let dataDirectory: String
    /// The server's log file.
    public let logFile: String
    /// The superuser created by `initdb`.
    public let superuser = "postgres"
    /// The superuser's password, needed over TCP only.
    public let superuserPassword = PostgresServer.initialSuperuserPassword

    private let toolchain: Toolchain
    private static let initialSuperuserPassword = "postgres"

    private init(directory: String, port: Int, toolchain: Toolchain) {
        self.socketDirectory = directory
        self.dataDirectory = directory + "/data"
        self.logFile = directory + "/log"
        self.port = port
        self.toolchain = toolchain
    }

    deinit {
        Self.tearDown(directory: socketDirectory, toolchain: toolchain)
    }

    /// Whether a server can be started here: `initdb`, `pg_ctl` and `psql`
    /// are installed and, under root, there is a way to run them as `nobody`.
    public static var isAvailable: Bool {
        (try? Toolchain.locate()) != nil
    }

    /// Creates a cluster in a new scratch directory and starts a server on it.
    ///
    /// Tries a few ports in case another process takes the free port found
    /// before the server binds it.
    /// - Throws: ``PostgresServerError/notInstalled(program:)`` when PostgreSQL
    ///   is missing, ``PostgresServerError/commandFailed(command:status:standardError:serverLog:)``
    ///   when `initdb` or `pg_ctl` fails.
    public static func start() throws -> PostgresServer {
        try startBlocking()
    }

    /// ``start()`` on a thread of its own (``OwnThread``): `initdb` and
    /// `pg_ctl start` take seconds. Async callers use this one.
    public static func started() async throws -> PostgresServer {
        try await OwnThread.run { try startBlocking() }
    }

    private static func startBlocking() throws -> PostgresServer {
        let toolchain = try Toolchain.locate()
        let directory = try makeScratchDirectory(owner: toolchain.serverUser)
        var started = false
        defer {
            if !started { tearDown(directory: directory, toolchain: toolchain) }
        }
        try initializeCluster(in: directory, toolchain: toolchain)
        var attempt = 1
        while true {
            let port = try freePort()
            do {
                try launch(directory: directory, port: port, toolchain: toolchain)
                started = true
                return PostgresServer(directory: directory, port: port, toolchain: toolchain)
            } catch let error as PostgresServerError where error.isPortInUse && attempt < 5 {
                attempt += 1
            }
        }
    }

    /// Starts the server again on the same port and data directory, after
    /// ``stop(mode:)``.
    public func start() throws {
        try Self.launch(directory: socketDirectory, port: port, toolchain: toolchain)
    }

    /// Runs `pg_ctl start`, with the server log's new lines in the error when
    /// the server does not come up.
    private static func launch(directory: String, port: Int, toolchain: Toolchain) throws {
        let logFile = directory + "/log"
        let logStart = (try? FileManager.default.attributesOfItem(atPath: logFile)[.size] as? Int) ?? 0
        // pg_ctl hands the options to /bin/sh: quote the directory.
        let options = [
            "-p \(port)", "-k '\(directory)'", "-c listen_addresses=127.0.0.1",
            "-c fsync=off", "-c max_connections=200",
        ].joined(separator: " ")
        // With -l the server writes to the log file, not to our pipes, so
        // pg_ctl returns once the server accepts connections.
        do {
            try check(
                toolchain.asServerUser([
                    toolchain.pgCtl, "-D", directory + "/data", "-l", logFile, "-w", "-t", "30", "-o", options,
                    "start",
                ]),
                in: directory)
        } catch PostgresServerError.commandFailed(let command, let status, let standardError, _) {
            throw PostgresServerError.commandFailed(
                command: command, status: status, standardError: standardError,
                serverLog: tail(of: logFile, from: logStart))
        }
    }

    /// Stops the server.
    /// - Parameter mode: `pg_ctl`'s shutdown mode: `smart`, `fast` (roll back
    ///   open transactions and disconnect) or `immediate` (no clean shutdown,
    ///   as after a crash).
    public func stop(mode: String = "fast") throws {
        try Self.check(
            toolchain.asServerUser([toolchain.pgCtl, "-D", dataDirectory, "-m", mode, "-w", "-t", "30", "stop"]),
            in: socketDirectory)
    }

    /// Stops the server (`fast`) and starts it again on the same port.
    public func restart() throws {
        try stop()
        try start()
    }

    /// Runs SQL with `psql` over the Unix socket, where no password is asked.
    ///
    /// The statements run one by one and the first error stops them.
    /// - Parameters:
    ///   - sql: One or more statements.
    ///   - database: The database to connect to.
    ///   - user: The role to connect as; the superuser when nil.
    /// - Returns: The rows, unaligned and without headers (`|` between
    ///   columns, a line per row), without the final newline.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres", user: String? = nil) throws -> String {
        try runPSQL(sql, connection: ["-h", socketDirectory, "-U", user ?? superuser, "-d", database], password: nil)
    }

    /// Runs SQL with `psql` over TCP to 127.0.0.1, where the role must give
    /// its password, as the daemon does.
    /// - Parameters:
    ///   - sql: One or more statements.
    ///   - database: The database to connect to.
    ///   - user: The role to connect as.
    ///   - password: The password to give (`PGPASSWORD`); none when nil.
    /// - Returns: The rows, as for ``psql(_:database:user:)``.
    /// - Throws: ``PostgresServerError/commandFailed(command:status:standardError:serverLog:)``
    ///   carrying psql's message when the login is refused or the SQL fails.
    @discardableResult
    public func psqlTCP(_ sql: String, database: String = "postgres", user: String, password: String?) throws
        -> String
    {
        try runPSQL(sql, connection: ["-h", host, "-U", user, "-d", database, "-w"], password: password)
    }

    /// Creates a database.
    /// - Parameters:
    ///   - name: The database's name.
    ///   - owner: Its owner, who may then create tables in its `public`
    ///     schema (since PostgreSQL 15 only the owner may); the superuser when nil.
    public func createDatabase(_ name: String, owner: String? = nil) throws {
        let ownerClause = owner.map { " OWNER \(Self.quotedIdentifier($0))" } ?? ""
        try psql("CREATE DATABASE \(Self.quotedIdentifier(name))\(ownerClause)")
    }

    /// Creates a role that may log in with a password.
    /// - Parameters:
    ///   - name: The role's name.
    ///   - password: Its password, stored as a SCRAM-SHA-256 verifier.
    ///   - superuser: Whether the role is a superuser.
    public func createRole(_ name: String, password: String, superuser: Bool = false) throws {
        let escaped = password.replacingOccurrences(of: "'", with: "''")
        let kind = superuser ? "SUPERUSER" : "NOSUPERUSER"
        try psql("CREATE ROLE \(Self.quotedIdentifier(name)) LOGIN \(kind) PASSWORD '\(escaped)'")
    }

    /// A connection URL for a role and database over TCP, such as
    /// `postgres://keeper@127.0.0.1:54321/tokens`.
    /// - Parameters:
    ///   - user: The role.
    ///   - password: Its password, percent-encoded into the URL; none when nil.
    ///   - database: The database.
    public func url(user: String, password: String? = nil, database: String) -> String {
        let encodedUser = user.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? user
        let credentials =
            password.map {
                encodedUser + ":" + ($0.addingPercentEncoding(withAllowedCharacters: .urlPasswordAllowed) ?? $0)
            } ?? encodedUser
        let encodedDatabase = database.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? database
        return "postgres://\(credentials)@\(host):\(port)/\(encodedDatabase)"
    }

    // MARK: - Running the programs

    private func runPSQL(_ sql: String, connection: [String], password: String?) throws -> String {
        // The SQL goes in a file rather than through stdin: writing to a pipe
        // that psql closed early (a refused login) would raise SIGPIPE here.
        let script = socketDirectory + "/script-\(UUID().uuidString).sql"
        guard FileManager.default.createFile(atPath: script, contents: Data(sql.utf8)) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        defer { unlink(script) }
        var environment = ["PGCONNECT_TIMEOUT": "10", "PGSSLMODE": "disable"]
        environment["PGPASSWORD"] = password
        let output = try Self.check(
            [toolchain.psql] + connection + [
                "-p", String(port), "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-f", script,
            ],
            in: socketDirectory, environment: environment)
        var trimmed = Substring(output)
        while trimmed.last == "\n" { trimmed.removeLast() }
        return String(trimmed)
    }

    /// Stops the server if it runs, without a clean shutdown, and removes
    /// its directory.
    private static func tearDown(directory: String, toolchain: Toolchain) {
        _ = try? run(
            toolchain.asServerUser([toolchain.pgCtl, "-D", directory + "/data", "-m", "immediate", "-w", "stop"]),
            in: directory)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The last lines of a log written since `offset`.
    private static func tail(of logFile: String, from offset: Int) -> String {
        guard let log = FileManager.default.contents(atPath: logFile), offset <= log.count else { return "" }
        let text = String(decoding: log[offset...], as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(30).joined(separator: "\n")
    }

    private static func initializeCluster(in directory: String, toolchain: Toolchain) throws {
        let passwordFile = directory + "/superuser-password"
        let password = Data((initialSuperuserPassword + "\n").utf8)
        guard FileManager.default.createFile(atPath: passwordFile, contents: password) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        defer { unlink(passwordFile) }
        chmod(passwordFile, 0o600)
        if let user = toolchain.serverUser {
            chown(passwordFile, user.uid, user.gid)
        }
        try check(
            toolchain.asServerUser([
                toolchain.initdb, "-D", directory + "/data", "-U", "postgres", "--pwfile", passwordFile,
                "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale", "--encoding=UTF8",
                "--no-sync", "--no-instructions",
            ]),
            in: directory)
    }

    /// Runs a command and returns its standard output, or throws carrying
    /// its standard error when it fails.
    @discardableResult
    private static func check(_ command: [String], in directory: String, environment: [String: String] = [:])
        throws -> String
    {
        let result = try run(command, in: directory, environment: environment)
        guard result.status == 0 else {
            throw PostgresServerError.commandFailed(
                command: command.joined(separator: " "), status: result.status,
                standardError: result.standardError, serverLog: "")
        }
        return result.standardOutput
    }

    /// Runs a program to its end and collects what it wrote.
    ///
    /// posix_spawn, not Foundation's Process: on Linux, Process learns that
    /// a child exited when a socket the child inherited closes, and the
    /// server `pg_ctl start` leaves behind inherits it too, so
    /// `waitUntilExit()` would wait for the server to stop
    /// (swift-corelibs-foundation issue 4795). Here the child gets only its
    /// standard streams (closefrom 3), so the server holds nothing of ours.
    private static func run(_ command: [String], in directory: String, environment extra: [String: String] = [:])
        throws -> (status: Int32, standardOutput: String, standardError: String)
    {
        // The caller's PG* variables (PGHOST, PGUSER, PGPASSWORD...) would
        // override the command line's defaults; HOME keeps ~/.pgpass out.
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }
        environment["HOME"] = directory
        environment.merge(extra) { $1 }

        let output = try makePipe()
        let errors = try makePipe()
        #if canImport(Glibc)
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #else
        var actions: posix_spawn_file_actions_t? = nil
        var attributes: posix_spawnattr_t? = nil
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output.write, 1)
        posix_spawn_file_actions_adddup2(&actions, errors.write, 2)
        // The server user may not be allowed into the caller's directory.
        #if canImport(Glibc)
        _ = GlibcSpawn.addChangeDirectory?(&actions, directory)
        #else
        posix_spawn_file_actions_addchdir_np(&actions, directory)
        #endif
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        #if canImport(Glibc)
        GlibcSpawn.closeFrom3(&actions)
        let flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        #else
        let flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_CLOEXEC_DEFAULT)
        #endif
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let arguments = command.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in arguments + variables { free(pointer) }
        }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, command[0], &actions, &attributes, arguments, variables)
        close(output.write)
        close(errors.write)
        guard spawned == 0 else {
            close(output.read)
            close(errors.read)
            throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO)
        }

        // Drain stderr alongside stdout: a child blocked on a full stderr pipe
        // would never close stdout.
        let collected = CollectedOutput()
        let reading = DispatchGroup()
        let errorsRead = errors.read
        DispatchQueue.global().async(group: reading) {
            let data = readToEnd(errorsRead)
            collected.data.withLock { $0 = data }
        }
        let standardOutput = readToEnd(output.read)
        reading.wait()

        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECHILD) }
        }
        // WIFEXITED and WEXITSTATUS are macros Swift does not see; a signal
        // reads as 128 + its number, as in a shell.
        let signal = status & 0x7f
        let exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        return (
            exitStatus,
            String(decoding: standardOutput, as: UTF8.self),
            collected.data.withLock { String(decoding: $0, as: UTF8.self) }
        )
    }

    /// A pipe whose ends children spawned elsewhere in the process (another
    /// test's) do not inherit: one of them holding the write end would keep
    /// our read from ending.
    private static func makePipe() throws -> (read: Int32, write: Int32) {
        // pipe2(O_CLOEXEC) would be atomic but is hidden from Swift (_GNU_SOURCE).
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        return (ends[0], ends[1])
    }

    /// Everything until end of file; closes the descriptor.
    private static func readToEnd(_ fd: Int32) -> Data {
        defer { close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                data.append(contentsOf: buffer[..<count])
            } else if count == 0 || errno != EINTR {
                return data
            }
        }
    }

    // MARK: - Setting up

    /// A free TCP port on 127.0.0.1, outside the kernel's ephemeral range
    /// (see ``LoopbackPort``).
    private static func freePort() throws -> Int {
        try LoopbackPort.free()
    }

    /// A new directory for the cluster and its socket, owned by the server's
    /// user.
    private static func makeScratchDirectory(owner: Toolchain.ServerUser?) throws -> String {
        var base = NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        // The server user must reach the directory, and the socket's path
        // (`<dir>/.s.PGSQL.65535`) must fit in sockaddr_un's 108 bytes.
        if (owner != nil && !isSearchableByOthers(base)) || base.utf8.count > 60 {
            base = "/tmp"
        }
        var template = Array((base + "/tokenkeeper-pg-XXXXXX").utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        let path = String(cString: created)
        if let owner, chown(path, owner.uid, owner.gid) != 0 {
            let error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        return path
    }

    /// Whether every directory on the path lets other users pass through.
    private static func isSearchableByOthers(_ path: String) -> Bool {
        var current = path
        while !current.isEmpty {
            var info = stat()
            guard stat(current, &info) == 0, info.st_mode & S_IXOTH != 0 else { return false }
            guard let slash = current.lastIndex(of: "/") else { break }
            current = String(current[..<slash])
        }
        return true
    }

    private static func quotedIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// Why a ``PostgresServer`` could not start, or a command against it failed.
public enum PostgresServerError: Error, CustomStringConvertible {
    /// A PostgreSQL program is not installed.
    case notInstalled(program: String)
    /// Running as root, with no way to run PostgreSQL as another user.
    case cannotLeaveRoot(reason: String)
    /// A program (`initdb`, `pg_ctl`, `psql`) exited with a failure status.
    /// `serverLog` holds the server log's last lines when the server did not start.
    case commandFailed(command: String, status: Int32, standardError: String, serverLog: String)

    /// What the failed program wrote on standard error, such as psql's
    /// `password authentication failed for user "keeper"`.
    public var standardError: String {
        if case .commandFailed(_, _, let standardError, _) = self { return standardError }
        return ""
    }

    public var description: String {
        switch self {
        case .notInstalled(let program):
            return "PostgreSQL's \(program) was found neither on PATH nor in /usr/lib/postgresql/<version>/bin;"
                + " install it with `apt-get install postgresql`"
        case .cannotLeaveRoot(let reason):
            return "PostgreSQL refuses to run as root and \(reason)"
        case .commandFailed(let command, let status, let standardError, let serverLog):
            var text = "\(command) exited with status \(status): \(standardError)"
            if !serverLog.isEmpty { text += "\nserver log:\n\(serverLog)" }
            return text
        }
    }

    /// Whether the server could not bind its port, which another process
    /// took after it was found free.
    var isPortInUse: Bool {
        guard case .commandFailed(_, _, _, let serverLog) = self else { return false }
        return serverLog.contains("already in use") || serverLog.contains("could not create any TCP/IP sockets")
    }
}

/// Where PostgreSQL's programs are, and how to run the server's as a user
/// other than root.
private struct Toolchain: Sendable {
    struct ServerUser: Sendable {
        var uid: uid_t
        var gid: gid_t
    }

    var initdb: String
    var pgCtl: String
    var psql: String
    /// The owner of the cluster when running as root; nil otherwise.
    var serverUser: ServerUser?
    /// Prefixed to `initdb` and `pg_ctl` when running as root.
    var switchUser: [String]

    func asServerUser(_ command: [String]) -> [String] {
        switchUser + command
    }

    static func locate() throws -> Toolchain {
        guard let binaries = postgresBinaries() else { throw PostgresServerError.notInstalled(program: "initdb") }
        guard let pgCtl = executable("pg_ctl", preferring: binaries) else {
            throw PostgresServerError.notInstalled(program: "pg_ctl")
        }
        guard let psql = executable("psql", preferring: binaries) else {
            throw PostgresServerError.notInstalled(program: "psql")
        }
        var toolchain = Toolchain(
            initdb: binaries + "/initdb", pgCtl: pgCtl, psql: psql, serverUser: nil, switchUser: [])
        guard geteuid() == 0 else { return toolchain }
        guard let entry = getpwnam("nobody") else {
            throw PostgresServerError.cannotLeaveRoot(reason: "there is no user nobody to run it as")
        }
        let user = ServerUser(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
        toolchain.serverUser = user
        if let setpriv = searchPath("setpriv") {
            toolchain.switchUser = [setpriv, "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--"]
        } else if let runuser = searchPath("runuser") {
            toolchain.switchUser = [runuser, "-u", "nobody", "--"]
        } else {
            throw PostgresServerError.cannotLeaveRoot(
                reason: "neither setpriv nor runuser is installed to run it as nobody (apt-get install util-linux)")
        }
        return toolchain
    }

    /// The directory of the `initdb` found first on PATH (symbolic links
    /// resolved, as /usr/local/bin/initdb may point into Debian's tree), or
    /// else Debian's `/usr/lib/postgresql/<highest version>/bin`.
    private static func postgresBinaries() -> String? {
        if let initdb = searchPath("initdb"), let resolved = realpath(initdb, nil) {
            defer { free(resolved) }
            let path = String(cString: resolved)
            return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.compactMap({ Int($0) }).sorted(by: >) {
            let directory = "/usr/lib/postgresql/\(version)/bin"
            if access(directory + "/initdb", X_OK) == 0 { return directory }
        }
        return nil
    }

    /// A program from the same installation as `initdb` (Debian's
    /// /usr/bin/psql is a wrapper choosing a version), or else from PATH.
    private static func executable(_ name: String, preferring directory: String) -> String? {
        let candidate = directory + "/" + name
        return access(candidate, X_OK) == 0 ? candidate : searchPath(name)
    }

    /// The first executable of that name on PATH, then in the sbin directories
    /// (which a non-login PATH may lack).
    private static func searchPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories =
            path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        for directory in directories where !directory.isEmpty {
            let candidate = directory + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }
}

#if canImport(Glibc)
/// glibc's posix_spawn extensions, which its headers declare only under
/// _GNU_SOURCE and Swift's Glibc module therefore does not show.
private enum GlibcSpawn {
    typealias AddChangeDirectory =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    /// `posix_spawn_file_actions_addchdir_np` (glibc 2.29).
    static var addChangeDirectory: AddChangeDirectory? {
        dlsym(nil, "posix_spawn_file_actions_addchdir_np").map { unsafeBitCast($0, to: AddChangeDirectory.self) }
    }

    /// Makes the child close every descriptor from 3 up.
    static func closeFrom3(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>) {
        // posix_spawn_file_actions_addclosefrom_np (glibc 2.34).
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(actions, 3)
            return
        }
        // Older glibc: close what is open now (closing a descriptor that is
        // no longer open is not an error for posix_spawn).
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > 2 {
            posix_spawn_file_actions_addclose(actions, fd)
        }
    }
}
#endif

/// Standard error read on another thread while standard output is read on
/// the calling one.
private final class CollectedOutput: Sendable {
    let data = Mutex(Data())
}
