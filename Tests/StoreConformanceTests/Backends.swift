import Foundation
import Logging
import PostgresStore
import SQLiteStore
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The backends every conformance test runs against, as Fluent's benchmarker
/// runs one suite against every database driver. PostgreSQL is a real server
/// the suite starts itself (``ConformancePostgres``); where none is installed
/// only SQLite runs (`scripts/test` installs it, so CI always runs both).
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    static var available: [Backend] {
        PostgresServer.isAvailable ? allCases : [.sqlite]
    }

    /// A fresh, empty store of this backend.
    /// - Parameter lockWait: How long a write waits for another process's
    ///   lock before the store answers with contention (SQLite's busy
    ///   timeout, PostgreSQL's `lock_timeout`); the backend's default when nil.
    /// - Parameter statementTimeout: PostgreSQL's statement timeout, whose
    ///   end counts as the store failing; the default (10 s) when nil.
    func open(lockWait: Duration? = nil, statementTimeout: Duration? = nil) async throws -> StoreUnderTest {
        switch self {
        case .sqlite:
            let scratch = try ScratchDirectory()
            var options = SQLiteAccountStore.Options()
            if let lockWait { options.busyTimeout = lockWait }
            let store = try await SQLiteAccountStore.open(directory: scratch.path, options: options)
            return StoreUnderTest(backend: self, store: store, scratch: scratch, schema: nil) {
                try await store.close()
            }
        case .postgres:
            let database = try #require(ConformancePostgres.current, "the suite's PostgreSQL did not start")
            let schema = ConformancePostgres.uniqueName("c_")
            let store = try await database.open(
                schema: schema, lockWait: lockWait, statementTimeout: statementTimeout)
            return StoreUnderTest(backend: self, store: store, scratch: nil, schema: schema) { store.close() }
        }
    }
}

extension StoreUnderTest {
    /// Another store on the same data, as another process (SQLite: the same
    /// directory) or another node (PostgreSQL: the same schema) opens it.
    /// The caller closes it.
    func openAnother() async throws -> StoreUnderTest {
        switch backend {
        case .sqlite:
            let scratch = try #require(scratch)
            let store = try await SQLiteAccountStore.open(directory: scratch.path)
            return StoreUnderTest(backend: backend, store: store, scratch: scratch, schema: nil) {
                try await store.close()
            }
        case .postgres:
            let database = try #require(ConformancePostgres.current, "the suite's PostgreSQL did not start")
            let schema = try #require(schema)
            let store = try await database.open(schema: schema)
            return StoreUnderTest(backend: backend, store: store, scratch: nil, schema: schema) { store.close() }
        }
    }
}

/// One store of one backend, with what a test needs to play other
/// processes or nodes.
struct StoreUnderTest: Sendable {
    let backend: Backend
    let store: any OperatorStore
    let scratch: ScratchDirectory?
    let schema: String?
    let closing: @Sendable () async throws -> Void

    init(
        backend: Backend, store: any OperatorStore, scratch: ScratchDirectory?, schema: String?,
        closing: @escaping @Sendable () async throws -> Void
    ) {
        self.backend = backend
        self.store = store
        self.scratch = scratch
        self.schema = schema
        self.closing = closing
    }

    func close() async throws {
        try await closing()
    }

    /// Runs a reader's query where readers read the tokens (SQLite: tokens.db,
    /// read-only; PostgreSQL: the schema's views) and returns its rows, each
    /// column as text ("" for NULL).
    func readersQuery(_ sql: String) throws -> [[String]] {
        switch backend {
        case .sqlite:
            let scratch = try #require(scratch)
            let connection = try SQLiteConnection(path: scratch.path + "/tokens.db", flags: .readOnly)
            defer { try? connection.close() }
            let statement = try connection.prepare(sql)
            defer { statement.finalize() }
            return try statement.rows { row in (0..<row.count).map { row.optionalString($0) ?? "" } }
        case .postgres:
            let database = try #require(ConformancePostgres.current, "the suite's PostgreSQL did not start")
            let schema = try #require(schema)
            let output = try database.psql("SET search_path TO \"\(schema)\";\n\(sql)")
            return output.split(separator: "\n").map { line in
                line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            }
        }
    }

    /// A lease owner known to be alive: on SQLite a process of this host that
    /// runs (this one, under another owner name); on PostgreSQL a node whose
    /// heartbeat is current.
    func liveOwner() throws -> String {
        let owner = "daemon-\(getpid())@\(ProcessInfo.processInfo.hostName)/\(UUID().uuidString.prefix(8))"
        if backend == .postgres { try heartbeat(owner, age: "0 seconds") }
        return owner
    }

    /// A lease owner known to be gone: on SQLite a pid no process has; on
    /// PostgreSQL a node whose heartbeat lapsed an hour ago.
    func goneOwner() throws -> String {
        let owner = "daemon-4194301@\(ProcessInfo.processInfo.hostName)/\(UUID().uuidString.prefix(8))"
        if backend == .postgres { try heartbeat(owner, age: "1 hour") }
        return owner
    }

    /// Another process takes the store's write lock and holds it for
    /// `duration` (SQLite: `BEGIN IMMEDIATE` on keeper.db from Python's
    /// sqlite3; PostgreSQL: `LOCK TABLE accounts` from psql), as an import's
    /// transaction or a CLI command does. Returns once the lock is held;
    /// the returned task ends when it is let go.
    func holdWriteLock(for duration: Duration) async throws -> Task<Void, Never> {
        let seconds = Double(duration.wholeMilliseconds) / 1000
        let work: @Sendable () -> Void
        let isHeld: @Sendable () throws -> Bool
        switch backend {
        case .sqlite:
            let directory = try #require(scratch).path
            let marker = directory + "/lock-held"
            let script = """
                import sqlite3, sys, time
                c = sqlite3.connect(sys.argv[1], isolation_level=None)
                c.execute("BEGIN IMMEDIATE")
                open(sys.argv[2], "w").close()
                time.sleep(float(sys.argv[3]))
                c.execute("COMMIT")
                """
            work = {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
                process.arguments = ["-c", script, directory + "/keeper.db", marker, "\(seconds)"]
                try? process.run()
                process.waitUntilExit()
            }
            isHeld = { FileManager.default.fileExists(atPath: marker) }
        case .postgres:
            let database = try #require(ConformancePostgres.current)
            let schema = try #require(schema)
            work = {
                _ = try? database.psql(
                    "BEGIN; LOCK TABLE \(schema).accounts IN EXCLUSIVE MODE; SELECT pg_sleep(\(seconds)); COMMIT;")
            }
            isHeld = {
                try database.psql(
                    """
                    SELECT count(*) FROM pg_locks
                    WHERE relation = '\(schema).accounts'::regclass AND mode = 'ExclusiveLock' AND granted
                    """) == "1"
            }
        }
        // A blocking child process, off the cooperative pool.
        let done = Task {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    work()
                    continuation.resume()
                }
            }
        }
        try await waitUntil("the other process holds the write lock", timeout: .seconds(20)) { try isHeld() }
        return done
    }

    private func heartbeat(_ node: String, age: String) throws {
        let database = try #require(ConformancePostgres.current)
        try database.psql(
            """
            INSERT INTO \(schema!).nodes (node, host, pid, heartbeat_at)
            VALUES ('\(node)', 'test', 1, now() - interval '\(age)')
            """)
    }
}

// MARK: - The suite's PostgreSQL server

/// Starts one PostgreSQL server for the suite and stops it when the suite is
/// done; each test works in a schema of its own.
struct ConformancePostgres: SuiteTrait, TestScoping {
    final class Database: Sendable {
        let server: PostgresServer
        let role = "keeper"
        let password = "keeper's password"
        let name = "tokens"

        init(server: PostgresServer) throws {
            self.server = server
            try server.createRole(role, password: password)
            try server.psql(
                """
                CREATE DATABASE \(name) OWNER \(role) TEMPLATE template0
                    LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'
                """)
        }

        func open(
            schema: String, deliveryClaim: Duration? = nil, lockWait: Duration? = nil,
            statementTimeout: Duration? = nil
        ) async throws -> PostgresAccountStore {
            var settings = try PostgresSettings(
                url: server.url(user: role, database: name), password: password, schema: schema, tls: .disable,
                maximumConnections: 4)
            if let deliveryClaim { settings.deliveryClaim = deliveryClaim }
            settings.lockTimeout = lockWait
            if let statementTimeout { settings.statementTimeout = statementTimeout }
            var logger = Logger(label: "conformance.postgres")
            logger.logLevel = .error
            return try await PostgresAccountStore.open(settings: settings, logger: logger)
        }

        @discardableResult
        func psql(_ sql: String) throws -> String {
            try server.psql(sql, database: name)
        }
    }

    /// Held weakly, so that tasks that copied the task-local value do not
    /// keep the server alive past the suite.
    final class Reference: Sendable {
        weak let database: Database?

        init(_ database: Database) {
            self.database = database
        }
    }

    @TaskLocal private static var reference: Reference?

    static var current: Database? { reference?.database }

    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard PostgresServer.isAvailable else { return try await function() }
        let database = try Database(server: await PostgresServer.started())
        defer { withExtendedLifetime(database) {} }
        try await Self.$reference.withValue(Reference(database)) {
            try await function()
        }
    }

    static func uniqueName(_ prefix: String) -> String {
        prefix + UUID().uuidString.lowercased().filter { $0 != "-" }.prefix(16)
    }
}

extension Trait where Self == ConformancePostgres {
    static var conformancePostgres: Self { ConformancePostgres() }
}

// MARK: - Values

/// A unique token, so that a search for one cannot match another by accident.
func makeToken(_ kind: String) -> Secret {
    Secret("\(kind)-\(UUID().uuidString)")
}

/// Now, on the machine's clock: PostgreSQL keeps leases on the server's
/// clock, so the tests' moments must be real ones.
func currentTime() -> Timestamp {
    SystemWallClock().now()
}

func makeGrant(seller: String, refresh: Secret = makeToken("RT"), receivedAt: Timestamp) -> TokenGrant {
    TokenGrant(
        sellerID: seller, profile: SellerProfile(), accessToken: makeToken("AT"), refreshToken: refresh,
        accessTokenLifetime: .seconds(86_400), refreshTokenLifetime: .seconds(86_400 * 30),
        expireTime: receivedAt + .seconds(86_400), refreshTokenValidTime: receivedAt + .seconds(86_400 * 30),
        receivedAt: receivedAt, requestID: "req-\(UUID().uuidString.prefix(6))")
}

let transientFailure = GatewayFailure(.transient, code: "Timeout", message: "no answer", requestID: "req-f")
