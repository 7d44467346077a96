import Foundation
public import Logging
import PostgresNIO
import Synchronization
public import TokenKeeperCore

/// The account store on PostgreSQL: several daemons share one schema, with
/// PostgreSQL's transactions and row locks as the only coordination.
///
/// - Leases are taken and given back in single statements (short
///   transactions), never held across the gateway call; a rotation commits
///   only if the stored refresh token is still the one that was sent (the
///   fence), so a node that lost its lease (paused, partitioned, dead) can
///   never overwrite a newer token.
/// - Changes reach the other nodes by `LISTEN`/`NOTIFY` (``runCluster(node:heartbeat:onLiveNodes:)``):
///   ``changes(since:)`` reads only the accounts announced since the last call,
///   and nothing at all when none was.
/// - Sellers are divided among live nodes (rendezvous hashing over the
///   `nodes` heartbeat table): each seller's first node schedules it at its
///   deadline, the others a little later (``ClusterView``), so a seller wakes
///   one node, and a dead node's sellers are taken over at once by the next,
///   before its heartbeat even lapses.
/// - Events people act on are queued in the outbox by the schema's triggers,
///   in the transaction that writes them, whichever node or command wrote
///   them; each channel's deliveries are claimed by one node at a time
///   (``dueDeliveries(channel:now:limit:)``), and the callback's state key
///   and used states live in the schema, so any node checks any link.
public final class PostgresAccountStore: AccountStore, Sendable {
    public let settings: PostgresSettings
    let client: PostgresClient
    private let runner: Task<Void, Never>
    let logger: Logger
    /// The quoted schema, for statements.
    let s: String
    let feed = Mutex(ChangeFeed())
    let cluster: Mutex<ClusterView>
    /// This store's own name for the deliveries it claims (a process may
    /// open several stores; each claims for itself until it joins the
    /// cluster as a node).
    let claimant: String

    /// Opens the store and brings the schema to this binary's version
    /// (creating it in an empty database); refuses a newer one.
    public static func open(settings: PostgresSettings, logger: Logger) async throws -> PostgresAccountStore {
        let configuration: PostgresClient.Configuration
        do {
            configuration = try settings.clientConfiguration()
        } catch {
            throw PostgresStoreError.connection("TLS settings: \(error)")
        }
        let store = PostgresAccountStore(settings: settings, configuration: configuration, logger: logger)
        do {
            // Bounded: the pool would wait for an unreachable server forever.
            _ = try await store.bounded(by: settings.statementTimeout * 3) { try await store.run("SELECT 1") }
            // The server answers: a migration may take its time (adding a
            // primary key to a million accounts, or waiting for another
            // node's migration), far longer than a statement should. Bounded
            // all the same, by ``migrationLimit``, against a server that
            // stops answering half way.
            try await store.bounded(by: max(settings.statementTimeout * 3, Self.migrationLimit)) {
                try await store.migrate()
            }
        } catch {
            store.close()
            throw PostgresStoreError.from(error)
        }
        return store
    }

    /// The longest a start waits for the schema's migration.
    static let migrationLimit: Duration = .seconds(600)

    private init(settings: PostgresSettings, configuration: PostgresClient.Configuration, logger: Logger) {
        self.settings = settings
        self.logger = logger
        // The pool's own messages (a connection attempt failed, at info) would
        // repeat every few hundred milliseconds while PostgreSQL is down; the
        // store says so once itself (the heartbeat, the listener, the scheduler).
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        self.client = client
        runner = Task { await client.run() }
        s = PostgresSchema.quoted(settings.schema)
        cluster = Mutex(ClusterView(node: nil, takeover: .seconds(5)))
        claimant = "store-" + UUID().uuidString.lowercased()
    }

    public func close() {
        runner.cancel()
    }

    // MARK: - Running statements

    /// One statement, answered within ``PostgresSettings/statementTimeout``
    /// or failed: while PostgreSQL is down, postgres-nio's pool waits for a
    /// connection for as long as it takes, and the scheduler must hear of it
    /// (hold calls back, retry a rotated pair's commit) rather than hang.
    /// A commit that timed out here but reached the server is harmless: its
    /// retry finds the refresh token already replaced, by itself.
    func run(_ query: PostgresQuery) async throws -> [[PostgresCell]] {
        let client = self.client
        let logger = self.logger
        return try await bounded(by: settings.statementTimeout) {
            do {
                var rows: [[PostgresCell]] = []
                for try await row in try await client.query(query, logger: logger) {
                    rows.append(Array(row))
                }
                return rows
            } catch {
                throw PostgresStoreError.from(error)
            }
        }
    }

    /// `body`'s result, or a connection failure once `timeout` has passed.
    func bounded<T: Sendable>(by timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T
    {
        try await withTimeout(timeout, timedOut: { PostgresStoreError.connection("no answer within \(timeout)") }) {
            try await body()
        }
    }

    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await client.withConnection { connection in
                try await connection.query("BEGIN", logger: logger)
                do {
                    let value = try await body(connection)
                    try await connection.query("COMMIT", logger: logger)
                    return value
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        } catch {
            throw PostgresStoreError.from(error)
        }
    }

    static func rows(_ sequence: PostgresRowSequence) async throws -> [[PostgresCell]] {
        var rows: [[PostgresCell]] = []
        for try await row in sequence { rows.append(Array(row)) }
        return rows
    }

    // MARK: - Schema

    /// The schema's version, or 0 when there is none yet.
    public func schemaVersion() async throws -> Int {
        let exists = try await run(
            "SELECT to_regclass(\(settings.schema + ".schema_migrations")) IS NOT NULL")
        guard try exists.first?.first?.decode(Bool.self) == true else { return 0 }
        let rows = try await run("SELECT coalesce(max(version), 0) FROM \(unescaped: s).schema_migrations")
        return try rows.first?.first?.decode(Int.self) ?? 0
    }

    private func migrate() async throws {
        let schema = settings.schema
        let s = self.s
        try await transaction { connection in
            // One node migrates at a time; the others wait and find it done
            // (however long that takes: no lock timeout here).
            try await connection.query("SET LOCAL lock_timeout = 0", logger: logger)
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema)))", logger: logger)
            try await connection.query("CREATE SCHEMA IF NOT EXISTS \(unescaped: s)", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS \(unescaped: s).schema_migrations (
                    version integer NOT NULL PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
            let found =
                try await Self.rows(
                    connection.query(
                        "SELECT coalesce(max(version), 0) FROM \(unescaped: s).schema_migrations", logger: logger)
                ).first?.first?.decode(Int.self) ?? 0
            guard found <= PostgresSchema.latestVersion else {
                throw PostgresStoreError.schemaTooNew(found: found, supported: PostgresSchema.latestVersion)
            }
            for migration in PostgresSchema.migrations where migration.version > found {
                for statement in migration.statements {
                    try await connection.query(
                        PostgresQuery(unsafeSQL: PostgresSchema.sql(statement, schema: schema)), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO \(unescaped: s).schema_migrations (version) VALUES (\(migration.version))",
                    logger: logger)
            }
        }
    }

    /// Creates the reader role if `password` is given and it does not exist
    /// (or sets its password), and grants it the readers' views and nothing else.
    public func grantReaders(password: String?) async throws -> [String] {
        var done: [String] = []
        let role = PostgresSchema.readerRole
        let exists = try await run("SELECT 1 FROM pg_roles WHERE rolname = \(role)")
        if let password {
            // A role's password cannot be a bound parameter: quote it as a literal.
            let literal = "'" + password.replacing("'", with: "''") + "'"
            let verb = exists.isEmpty ? "CREATE" : "ALTER"
            _ = try await run(PostgresQuery(unsafeSQL: "\(verb) ROLE \(role) LOGIN PASSWORD \(literal)"))
            done.append(exists.isEmpty ? "created role \(role)" : "set the password of role \(role)")
        } else if exists.isEmpty {
            _ = try await run(PostgresQuery(unsafeSQL: "CREATE ROLE \(role) NOLOGIN"))
            done.append("created role \(role) (NOLOGIN: give it a password to let readers log in)")
        }
        for statement in PostgresSchema.readerGrants(schema: settings.schema) {
            _ = try await run(PostgresQuery(unsafeSQL: statement))
        }
        let views = ["tokens", "valid_tokens", "seller_tokens"].map { "\(settings.schema).\($0)" }
        done.append("granted \(role) SELECT on \(views.joined(separator: ", ")) only")
        return done
    }

    /// The SQL ``grantReaders(password:)`` runs, for operators who create
    /// the role themselves.
    public static func readerSQL(schema: String) -> [String] {
        ["CREATE ROLE \(PostgresSchema.readerRole) LOGIN PASSWORD '…'"] + PostgresSchema.readerGrants(schema: schema)
    }
}

/// What ``PostgresAccountStore/changes(since:)`` has to report: the accounts
/// announced since the last call, or everything (after the listener
/// reconnected, or the live nodes changed).
struct ChangeFeed {
    var pending: Set<AccountKey> = []
    var everything = false
    var sequence: Int64 = 0
    /// When the schedule was last read whole for ``everything``.
    var lastFullReload: ContinuousClock.Instant?

    /// Takes a notification's payload: `*`, or `app:seller_id` (checked for
    /// shape only here: it is looked up before anything is scheduled).
    mutating func announce(_ payload: String, maxPending: Int) {
        if payload == "*" {
            everything = true
        } else if let account = Self.account(announcedAs: payload) {
            if pending.count >= maxPending {
                pending.removeAll()
                everything = true
            } else if !everything {
                pending.insert(account)
            }
        }
    }

    /// The account a payload names: a valid app name, `:` (which no app name
    /// has) and a plausible seller id (which may have one); nil otherwise.
    static func account(announcedAs payload: String) -> AccountKey? {
        let scalars = payload.unicodeScalars
        guard let colon = scalars.firstIndex(of: ":"),
            let app = AppName(rawValue: String(scalars[..<colon]))
        else { return nil }
        let sellerID = String(scalars[scalars.index(after: colon)...])
        return isPlausibleSellerID(sellerID) ? AccountKey(app: app, sellerID: sellerID) : nil
    }

    /// Seller ids are short and printable; a payload that is not cannot name one.
    static func isPlausibleSellerID(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 128
            && text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F }
    }
}

extension PostgresAccountStore {
    /// The readers' role.
    public static var readerRole: String { PostgresSchema.readerRole }
}
extension PostgresAccountStore: OperatorStore {}
