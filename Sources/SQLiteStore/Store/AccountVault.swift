import CSQLite
import Logging
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The synchronous core of ``SQLiteAccountStore``: both connections and every
/// query. It blocks (fsync, busy waits), so it only ever runs on the store's
/// dispatch queue; the actor is its asynchronous face.
///
/// Every account write commits to `keeper.db` first (durably,
/// `synchronous=FULL`), then rewrites the sellers' rows in `tokens.db` from
/// what `keeper.db` holds at that moment (see ``updateReaders(_:)``).
final class AccountVault {
    static let keeperFileName = "keeper.db"
    static let tokensFileName = "tokens.db"
    static let keeperMode: mode_t = 0o600
    static let tokensMode: mode_t = 0o640
    /// After a failed repair of tokens.db, the next is tried no sooner than this.
    static let repairRetryInterval: Duration = .seconds(5)

    let keeperPath: String
    let tokensPath: String
    let keeper: SQLiteConnection
    let tokens: SQLiteConnection
    let logger: Logger
    /// Dates the events the vault records on its own (a repair at open).
    let clock: any WallClock
    private(set) var isClosed = false
    /// The change sequence of this connection's last account write.
    /// `PRAGMA data_version` only moves for other connections' commits, so
    /// the change feed needs this to see writes made through this store.
    var lastOwnSequence: Int64 = 0
    /// Set when a tokens.db write failed after keeper.db committed.
    var readersNeedRepair = false
    /// After a failed repair, the next is not tried before this.
    var nextRepairAttempt: ContinuousClock.Instant?
    /// The store's file system has had less than ``lowSpaceBytes`` free since
    /// the last commit (see ``keepLogSmallWhileLowOnSpace(_:)``).
    var lowOnSpace = false
    /// The connections whose `journal_size_limit` is 0 for it.
    var logsCutBack: Set<ObjectIdentifier> = []
    let directory: String

    /// Opens (creating if needed) `keeper.db` and `tokens.db` in `directory`,
    /// migrates them, and rebuilds tokens.db rows that disagree with keeper.db.
    init(directory: String, busyTimeout: Duration, checkReaders: Bool, clock: any WallClock, logger: Logger) throws {
        self.logger = logger
        self.clock = clock
        let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        self.directory = base
        keeperPath = base + "/" + Self.keeperFileName
        tokensPath = base + "/" + Self.tokensFileName
        let readersGroup = try FilePermissions.prepareDirectory(base, logger: logger)
        let keeper = try Self.openDatabase(
            path: keeperPath, schema: .keeper, mode: Self.keeperMode, group: nil, synchronous: .full,
            persistentWAL: false, busyTimeout: busyTimeout, logger: logger)
        // URI filenames: the repair attaches keeper.db read-only (`?mode=ro`).
        let openTokens = { [tokensPath] in
            try Self.openDatabase(
                path: tokensPath, schema: .tokens, mode: Self.tokensMode, group: readersGroup, synchronous: .normal,
                persistentWAL: true, busyTimeout: busyTimeout, logger: logger, extraFlags: .uri)
        }
        let tokens: SQLiteConnection
        // A tokens.db made anew holds no row: it is filled before the store
        // is handed out, whoever opens it (the daemon otherwise compares
        // later, a stretch at a time, and readers would find nothing meanwhile).
        var rebuilt = access(tokensPath, F_OK) != 0
        do {
            tokens = try openTokens()
        } catch  where Self.isDamage(error) {
            rebuilt = true
            // tokens.db is derived from keeper.db: a damaged one is moved
            // aside (kept for a post-mortem) and rebuilt, never patched.
            let aside = try Self.moveAside(tokensPath, at: clock.now())
            logger.error(
                "tokens.db was damaged; it was moved aside and is rebuilt from keeper.db",
                metadata: ["path": "\(tokensPath)", "moved_to": "\(aside)", "error": "\(error)"])
            do {
                tokens = try openTokens()
            } catch {
                try? keeper.close()
                throw error
            }
        } catch {
            try? keeper.close()
            throw error
        }
        self.keeper = keeper
        self.tokens = tokens
        // A daemon checks later, a stretch at a time (SQLiteAccountStore.checkReaders()).
        guard checkReaders || rebuilt else { return }
        do {
            let repaired = try repairReaders()
            if repaired > 0 {
                logger.warning(
                    "tokens.db disagreed with keeper.db and was rebuilt from it",
                    metadata: ["rows": "\(repaired)", "path": "\(tokensPath)"])
            }
        } catch {
            // keeper.db is sound and is the truth: refreshing goes on, and the
            // repair is tried again on later writes.
            readersNeedRepair = true
            logger.critical(
                "tokens.db could not be compared with keeper.db at open; readers may see old rows until it is repaired",
                metadata: ["path": "\(tokensPath)", "error": "\(error)"])
        }
    }

    /// True for an error that says the file's content is damaged (not a
    /// database, or corrupt), as opposed to a problem with its permissions.
    static func isDamage(_ error: any Error) -> Bool {
        if case SQLiteStoreError.notADatabase = error { return true }
        if let error = error as? SQLiteError {
            return error.isNotADatabase || error.primaryCode == SQLITE_CORRUPT
        }
        return false
    }

    /// Renames `path` and its `-wal`/`-shm` files to `path.damaged-MILLIS`;
    /// returns the new name of the main file.
    static func moveAside(_ path: String, at now: Timestamp) throws -> String {
        let aside = "\(path).damaged-\(now.millisecondsSince1970)"
        for suffix in ["", "-wal", "-shm"] where access(path + suffix, F_OK) == 0 {
            guard rename(path + suffix, aside + suffix) == 0 else {
                throw SQLiteStoreError.fileProblem(
                    path: path + suffix,
                    problem: "is damaged and cannot be moved aside: \(String(cString: strerror(errno)))")
            }
        }
        return aside
    }

    /// Opens one database file: creates it with its mode, refuses a file that
    /// is not ours or is newer (untouched), then sets WAL and migrates.
    private static func openDatabase(
        path: String, schema: DatabaseSchema, mode: mode_t, group: gid_t?,
        synchronous: SQLiteConnection.SynchronousMode, persistentWAL: Bool, busyTimeout: Duration,
        logger: Logger, extraFlags: SQLiteConnection.OpenFlags = []
    ) throws -> SQLiteConnection {
        try FilePermissions.createIfMissing(path, mode: mode, group: group, logger: logger)
        let connection = try SQLiteConnection(
            path: path, flags: [.readWrite, .noMutex, .noFollow, extraFlags])
        do {
            try connection.setBusyTimeout(busyTimeout)
            // Before anything that may write: a refused file stays as it was.
            _ = try schema.checkCompatibility(of: connection)
            try FilePermissions.enforce(path, mode: mode, group: group, required: true, logger: logger)
            try connection.setDefensive(true)
            try connection.setPragma("trusted_schema", to: .keyword("OFF"))
            if persistentWAL {
                // Before the first WAL transaction, so no close ever removes -wal/-shm.
                try connection.setPersistentWAL(true)
            }
            let journalMode = try connection.setJournalMode("WAL")
            guard journalMode == "wal" else {
                throw SQLiteStoreError.fileProblem(
                    path: path, problem: "cannot switch to WAL journal mode (SQLite kept '\(journalMode)')")
            }
            try connection.setSynchronous(synchronous)
            // Statement and savepoint journals (and temporary indexes) in
            // memory, not in files under /var/tmp: a grouped commit (a
            // savepoint per refresh) and every import upsert spilled one to a
            // new temporary file past 64 KiB, measured at more writes than the
            // WAL's own, with an open and unlink per commit.
            try connection.setPragma("temp_store", to: .keyword("MEMORY"))
            // With a persistent WAL the file would otherwise keep its largest size.
            try connection.setPragma("journal_size_limit", to: .integer(Self.journalSizeLimit))
            try schema.migrate(connection)
            // A read opens the WAL: -wal and -shm exist from here on.
            _ = try connection.cachedStatement("SELECT count(*) FROM sqlite_master").firstRow { $0.int64(0) }
            for suffix in ["-wal", "-shm"] {
                try FilePermissions.enforce(
                    path + suffix, mode: mode, group: group, required: persistentWAL, logger: logger)
            }
        } catch {
            try? connection.close()
            throw error
        }
        return connection
    }

    /// Closes both files. With its persistent WAL, tokens.db keeps its
    /// `-wal`/`-shm` files for read-only readers.
    func close() throws {
        guard !isClosed else { return }
        isClosed = true
        var firstError: (any Error)?
        do { try tokens.close() } catch { firstError = error }
        do { try keeper.close() } catch { firstError = firstError ?? error }
        if let firstError { throw firstError }
    }

    func ensureOpen() throws {
        if isClosed { throw SQLiteStoreError.closed }
    }

    // MARK: - Writing keeper.db

    /// A write transaction on keeper.db in progress: hands out its change
    /// sequence and collects the sellers whose readers' rows must follow.
    final class KeeperWrite {
        private let connection: SQLiteConnection
        private(set) var sequence: Int64?
        private(set) var touched: [AccountKey] = []

        /// What the write had taken before a savepoint.
        struct Mark {
            fileprivate var hadSequence: Bool
            fileprivate var touchedCount: Int
        }

        init(connection: SQLiteConnection) {
            self.connection = connection
        }

        /// The number stamped on every account row this transaction writes,
        /// taken from the one-row counter on first use. Writes are serialized
        /// by `BEGIN IMMEDIATE`, so numbers are committed in order.
        func changeSequence() throws -> Int64 {
            if let sequence { return sequence }
            // No RETURNING (SQLite 3.35+): the same transaction reads it back.
            try connection.execute("UPDATE change_counter SET seq = seq + 1 WHERE id = 1", [])
            let next = try connection.cachedStatement("SELECT seq FROM change_counter WHERE id = 1")
                .firstRow { $0.int64(0) }
            guard let next else {
                throw SQLiteStoreError.fileProblem(path: connection.path, problem: "change_counter row is missing")
            }
            sequence = next
            return next
        }

        /// The seller's row in tokens.db must be rewritten after the commit.
        func touch(_ key: AccountKey) {
            touched.append(key)
        }

        func mark() -> Mark {
            Mark(hadSequence: sequence != nil, touchedCount: touched.count)
        }

        /// Forgets what was taken since `mark`, whose savepoint was rolled
        /// back: a sequence taken after it was rolled back with it.
        func rollBack(to mark: Mark) {
            if !mark.hadSequence { sequence = nil }
            touched.removeSubrange(mark.touchedCount...)
        }
    }

    /// The group commit whose transaction is open: writes made meanwhile join it.
    private var openBatch: KeeperWrite?

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction on keeper.db, commits
    /// (durably), then brings the touched sellers' tokens.db rows in line.
    func write<T>(_ body: (KeeperWrite) throws -> T) throws -> T {
        if let openBatch { return try body(openBatch) }
        try ensureOpen()
        let write = KeeperWrite(connection: keeper)
        let result = try keeper.transaction(.immediate) { try body(write) }
        keepLogSmallWhileLowOnSpace(keeper)
        if let sequence = write.sequence {
            lastOwnSequence = max(lastOwnSequence, sequence)
        }
        if !write.touched.isEmpty {
            updateReaders(write.touched)
        }
        return result
    }

    /// Runs `items` (each making its writes through ``write(_:)``) in one
    /// keeper.db transaction, so they share one durable commit, then rewrites
    /// their tokens.db rows in one more. Each item runs in its own savepoint:
    /// one refused for its own account's values (``StoreFailureScope/account``)
    /// is rolled back alone and the others commit. An error that reaches the
    /// whole store (the commit itself, a full disk) fails every item, and
    /// nothing of the batch is stored.
    ///
    /// - Returns: Each item's error, or nil where it committed.
    func writeBatch(_ items: [() throws -> Void]) -> [(any Error)?] {
        var errors = [(any Error)?](repeating: nil, count: items.count)
        let write = KeeperWrite(connection: keeper)
        do {
            try ensureOpen()
            openBatch = write
            defer { openBatch = nil }
            try keeper.transaction(.immediate) {
                for (index, item) in items.enumerated() {
                    let mark = write.mark()
                    try keeper.cachedStatement("SAVEPOINT batch_item").run()
                    do {
                        try item()
                        try keeper.cachedStatement("RELEASE batch_item").run()
                    } catch  where StoreFailureScope.of(error) == .account && keeper.isInTransaction {
                        try keeper.cachedStatement("ROLLBACK TO batch_item").run()
                        try keeper.cachedStatement("RELEASE batch_item").run()
                        write.rollBack(to: mark)
                        errors[index] = error
                    }
                }
            }
        } catch {
            return Array(repeating: error, count: items.count)
        }
        keepLogSmallWhileLowOnSpace(keeper)
        if let sequence = write.sequence {
            lastOwnSequence = max(lastOwnSequence, sequence)
        }
        if !write.touched.isEmpty {
            updateReaders(write.touched)
        }
        return errors
    }

    static let insertEventSQL =
        "INSERT INTO events (at, app, seller_id, kind, detail, request_id) VALUES (?, ?, ?, ?, ?, ?)"

    /// Appends an event about one account inside the current keeper.db
    /// transaction (or alone).
    func insertEvent(
        _ kind: EventKind, account key: AccountKey, detail: String? = nil, requestID: String? = nil, at: Timestamp
    ) throws {
        try insertEvent(kind, app: key.app, sellerID: key.sellerID, detail: detail, requestID: requestID, at: at)
    }

    /// Appends an event inside the current keeper.db transaction (or alone);
    /// a kind that is notified goes to the outbox in the same transaction.
    /// No app and no seller: an event of the daemon's own.
    func insertEvent(
        _ kind: EventKind, app: AppName?, sellerID: String?, detail: String? = nil, requestID: String? = nil,
        at: Timestamp
    ) throws {
        try keeper.execute(
            Self.insertEventSQL, [at.stored, app?.rawValue, sellerID, kind.rawValue, detail, requestID])
        if EventKind.notified.contains(kind) {
            try keeper.execute("INSERT INTO outbox (event_id) VALUES (?)", [keeper.lastInsertRowID])
        }
    }

    func fetchAccount(_ key: AccountKey) throws -> Account? {
        try keeper.cachedStatement("SELECT \(AccountRow.columns) FROM accounts WHERE app = ? AND seller_id = ?")
            .firstRow(key.bound, AccountRow.decode)
    }
}
