import CSQLite

/// One connection to an SQLite database file: a small, safe layer over the C API.
///
/// - SQL text never carries values: they are bound to `?` parameters
///   (``SQLiteStatement/bind(_:)``), strings with `SQLITE_TRANSIENT`.
/// - Errors are ``SQLiteError``s with the extended result code, SQLite's
///   message and the SQL, never a bound value.
/// - Writers use ``transaction(_:_:)`` with `BEGIN IMMEDIATE`, so that the
///   write lock is taken (and waited for, up to the busy timeout) before any
///   read: a deferred transaction that later tries to write can fail with
///   `SQLITE_BUSY` without waiting.
///
/// Not thread-safe (it is opened with `SQLITE_OPEN_NOMUTEX` by default): use
/// it from one thread or serial executor at a time.
public final class SQLiteConnection {
    /// Flags of `sqlite3_open_v2`.
    public struct OpenFlags: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let readOnly = OpenFlags(rawValue: SQLITE_OPEN_READONLY)
        public static let readWrite = OpenFlags(rawValue: SQLITE_OPEN_READWRITE)
        public static let create = OpenFlags(rawValue: SQLITE_OPEN_CREATE)
        /// Filenames (also in `ATTACH`) may be `file:` URIs such as `file:x.db?mode=ro`.
        public static let uri = OpenFlags(rawValue: SQLITE_OPEN_URI)
        /// No per-connection mutex: the caller serializes use of the connection.
        public static let noMutex = OpenFlags(rawValue: SQLITE_OPEN_NOMUTEX)
        /// Refuse to open a database file that is a symbolic link.
        public static let noFollow = OpenFlags(rawValue: SQLITE_OPEN_NOFOLLOW)

        /// Read and write, creating the file if needed, no mutex.
        public static let `default`: OpenFlags = [.readWrite, .create, .noMutex]
    }

    /// How a transaction starts.
    public enum TransactionKind: String, Sendable {
        /// Locks are taken by the first read and the first write.
        case deferred = "DEFERRED"
        /// The write lock is taken at once: use it for every transaction that writes.
        case immediate = "IMMEDIATE"
        /// No other connection may read or write (rarely needed in WAL mode).
        case exclusive = "EXCLUSIVE"
    }

    private var handle: OpaquePointer?
    private var statementCache: [String: SQLiteStatement] = [:]
    /// The busy handler's state (``setBusyTimeout(_:)``); SQLite holds an
    /// unretained pointer to it, so it lives as long as the connection.
    let busyWait = BusyWait()
    /// The file as given to ``init(path:flags:)``.
    public let path: String

    /// Opens (or with `.create`, creates) the database at `path`.
    ///
    /// Opening does not read the file: a file that is not a database is only
    /// noticed by the first statement (`SQLITE_NOTADB`).
    public init(path: String, flags: OpenFlags = .default) throws(SQLiteError) {
        self.path = path
        var connection: OpaquePointer?
        let code = sqlite3_open_v2(path, &connection, flags.rawValue, nil)
        guard code == SQLITE_OK, let connection else {
            let error = SQLiteError(code: code, connection: connection, sql: nil)
            // A handle is returned even on failure and must be closed.
            sqlite3_close(connection)
            throw SQLiteError(code: error.code, message: "cannot open \(path): \(error.message)")
        }
        handle = connection
        // Extended codes tell SQLITE_CONSTRAINT_UNIQUE from SQLITE_CONSTRAINT_CHECK,
        // SQLITE_IOERR_FSYNC from SQLITE_IOERR_WRITE, and so on.
        sqlite3_extended_result_codes(connection, 1)
    }

    deinit {
        for statement in statementCache.values { statement.finalize() }
        // A statement prepared elsewhere may outlive this object: it must
        // not call a handler whose state is gone.
        if let handle { sqlite3_busy_handler(handle, nil, nil) }
        // close_v2 defers the close until statements still alive elsewhere are finalized.
        sqlite3_close_v2(handle)
    }

    /// True until ``close()``.
    public var isOpen: Bool { handle != nil }

    /// Finalizes the cached statements and closes the connection. Closing a
    /// closed connection does nothing.
    ///
    /// - Throws: `SQLITE_BUSY` when statements prepared with ``prepare(_:)``
    ///   are still alive; the connection then closes when they are released.
    public func close() throws(SQLiteError) {
        guard let handle else { return }
        for statement in statementCache.values { statement.finalize() }
        statementCache.removeAll()
        sqlite3_busy_handler(handle, nil, nil)
        self.handle = nil
        let code = sqlite3_close(handle)
        if code != SQLITE_OK {
            var pending: [String] = []
            var statement = sqlite3_next_stmt(handle, nil)
            while let current = statement {
                pending.append(sqlite3_sql(current).map { String(cString: $0) } ?? "?")
                statement = sqlite3_next_stmt(handle, current)
            }
            sqlite3_close_v2(handle)
            throw SQLiteError(
                code: code, message: "closed with unfinalized statements; they close it when released",
                sql: pending.joined(separator: "; "))
        }
    }

    // MARK: - Statements

    /// Prepares one statement. The caller owns it.
    ///
    /// - Throws: ``SQLiteError`` for invalid SQL, or when `sql` holds more than
    ///   one statement.
    public func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        try prepare(sql, persistent: false)
    }

    /// A statement prepared once and kept for the life of the connection, for
    /// hot statements. It is reset before it is handed out.
    public func cachedStatement(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        if let statement = statementCache[sql] {
            statement.reset()
            return statement
        }
        let statement = try prepare(sql, persistent: true)
        statementCache[sql] = statement
        return statement
    }

    private func prepare(_ sql: String, persistent: Bool) throws(SQLiteError) -> SQLiteStatement {
        let connection = try liveHandle()
        var statement: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let flags = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
        let code = sql.withCString { text in
            let code = sqlite3_prepare_v3(connection, text, -1, flags, &statement, &tail)
            if code == SQLITE_OK, let tail, !Self.isBlank(tail) {
                return SQLITE_MISUSE
            }
            return code
        }
        guard code == SQLITE_OK else {
            sqlite3_finalize(statement)
            if code == SQLITE_MISUSE {
                throw SQLiteError.misuse("more than one statement given to prepare; use execute", sql: sql)
            }
            throw SQLiteError(code: code, connection: connection, sql: sql)
        }
        guard let statement else {
            throw SQLiteError.misuse("no statement in SQL", sql: sql)
        }
        return SQLiteStatement(handle: statement, sql: sql)
    }

    private static func isBlank(_ text: UnsafePointer<CChar>) -> Bool {
        // Whitespace and comments after the last statement are fine;
        // sqlite3_complete is not a parser, so only whitespace counts here.
        var cursor = text
        while cursor.pointee != 0 {
            switch UInt8(bitPattern: cursor.pointee) {
            case 0x20, 0x09, 0x0A, 0x0D: cursor += 1
            default: return false
            }
        }
        return true
    }

    /// Runs one or more statements that take no parameters (schema, `BEGIN`).
    public func execute(_ sql: String) throws(SQLiteError) {
        let connection = try liveHandle()
        var code: Int32 = SQLITE_OK
        var failedSQL = sql
        sql.withCString { text in
            var remaining: UnsafePointer<CChar>? = text
            while let current = remaining, current.pointee != 0 {
                var statement: OpaquePointer?
                var tail: UnsafePointer<CChar>?
                code = sqlite3_prepare_v2(connection, current, -1, &statement, &tail)
                guard code == SQLITE_OK else {
                    failedSQL = String(cString: current)
                    return
                }
                // A blank tail (whitespace, a comment) prepares to no statement.
                if let statement {
                    repeat {
                        code = sqlite3_step(statement)
                    } while code == SQLITE_ROW
                    if code != SQLITE_DONE {
                        failedSQL = sqlite3_sql(statement).map { String(cString: $0) } ?? sql
                        sqlite3_finalize(statement)
                        return
                    }
                    code = sqlite3_finalize(statement)
                }
                remaining = tail
            }
        }
        guard code == SQLITE_OK || code == SQLITE_DONE else {
            throw SQLiteError(code: code, connection: connection, sql: failedSQL)
        }
    }

    /// Runs one statement with bound values, through the statement cache.
    public func execute(_ sql: String, _ values: [(any SQLiteBindable)?]) throws(SQLiteError) {
        try cachedStatement(sql).run(values)
    }

    // MARK: - Transactions

    /// Runs `body` in a transaction: commits when it returns, rolls back when
    /// it throws (or when the commit fails) and rethrows.
    ///
    /// Transactions do not nest: calling this inside `body` throws.
    public func transaction<T>(_ kind: TransactionKind = .immediate, _ body: () throws -> T) throws -> T {
        try cachedStatement("BEGIN \(kind.rawValue) TRANSACTION").run()
        let result: T
        do {
            result = try body()
            try cachedStatement("COMMIT TRANSACTION").run()
        } catch {
            rollbackIfOpen()
            throw error
        }
        return result
    }

    /// Some errors (`SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_NOMEM`) roll the
    /// transaction back by themselves; roll back only what is still open.
    private func rollbackIfOpen() {
        guard isInTransaction else { return }
        do {
            try cachedStatement("ROLLBACK TRANSACTION").run()
        } catch {
            // Nothing more can be done here; the connection stays usable and
            // the next BEGIN will report the problem if it persists.
        }
    }

    /// True while a transaction is open.
    public var isInTransaction: Bool {
        handle.map { sqlite3_get_autocommit($0) == 0 } ?? false
    }

    /// Rows changed by the last `INSERT`, `UPDATE` or `DELETE`.
    public var changes: Int {
        handle.map { Int(sqlite3_changes($0)) } ?? 0
    }

    /// The rowid of the last successful `INSERT`.
    public var lastInsertRowID: Int64 {
        handle.map { sqlite3_last_insert_rowid($0) } ?? 0
    }

    func liveHandle() throws(SQLiteError) -> OpaquePointer {
        guard let handle else { throw SQLiteError.misuse("connection to \(path) is closed") }
        return handle
    }
}
