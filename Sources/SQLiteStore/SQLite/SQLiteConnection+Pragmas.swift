import CSQLite

extension SQLiteConnection {
    /// `PRAGMA synchronous` levels.
    public enum SynchronousMode: String, Sendable {
        case off = "OFF"
        case normal = "NORMAL"
        case full = "FULL"
        case extra = "EXTRA"
    }

    /// The first column of the first row of `PRAGMA name`.
    ///
    /// PRAGMA arguments cannot be bound, so `name` must be a plain identifier
    /// (letters, digits, `_`); anything else throws.
    public func pragma(_ name: String) throws(SQLiteError) -> SQLiteValue {
        try Self.checkIdentifier(name)
        let statement = try cachedStatement("PRAGMA \(name)")
        defer { statement.reset() }
        guard try statement.step() else { return .null }
        return try statement.row.value(0)
    }

    /// Sets `PRAGMA name = value` and returns the first column of what it
    /// answers (`journal_mode` answers the mode in force), or `.null`.
    ///
    /// Only integers and identifiers are accepted, both checked: PRAGMA
    /// arguments cannot be bound, and no other value belongs in SQL text.
    @discardableResult
    public func setPragma(_ name: String, to value: PragmaArgument) throws(SQLiteError) -> SQLiteValue {
        try Self.checkIdentifier(name)
        let argument: String
        switch value {
        case .integer(let integer): argument = String(integer)
        case .keyword(let keyword):
            try Self.checkIdentifier(keyword)
            argument = keyword
        }
        let statement = try prepare("PRAGMA \(name) = \(argument)")
        defer { statement.finalize() }
        guard try statement.step() else { return .null }
        return try statement.row.value(0)
    }

    /// A PRAGMA argument: a number or a keyword such as `WAL`.
    public enum PragmaArgument: Sendable {
        case integer(Int64)
        case keyword(String)
    }

    /// `PRAGMA user_version`: the schema version our migrations keep.
    public func userVersion() throws(SQLiteError) -> Int64 {
        try integerPragma("user_version")
    }

    public func setUserVersion(_ version: Int64) throws(SQLiteError) {
        try setPragma("user_version", to: .integer(version))
    }

    /// `PRAGMA application_id`: tells our files from other SQLite databases.
    public func applicationID() throws(SQLiteError) -> Int64 {
        try integerPragma("application_id")
    }

    /// `PRAGMA data_version`: changes when another connection (in any
    /// process) commits to the database; a cheap "did anything change?".
    public func dataVersion() throws(SQLiteError) -> Int64 {
        try integerPragma("data_version")
    }

    /// Switches to WAL (or another journal mode) and returns the mode in force.
    @discardableResult
    public func setJournalMode(_ mode: String) throws(SQLiteError) -> String {
        if case .text(let inForce) = try setPragma("journal_mode", to: .keyword(mode)) {
            return inForce.lowercased()
        }
        return ""
    }

    public func setSynchronous(_ mode: SynchronousMode) throws(SQLiteError) {
        try setPragma("synchronous", to: .keyword(mode.rawValue))
    }

    /// Keeps the `-wal` and `-shm` files when the last connection closes
    /// (`SQLITE_FCNTL_PERSIST_WAL`). Read-only readers cannot create them, so
    /// without them they could not open a WAL database at all.
    public func setPersistentWAL(_ on: Bool) throws(SQLiteError) {
        let code = tokenkeeper_sqlite_persist_wal(try liveHandle(), on ? 1 : 0)
        guard code == SQLITE_OK else { throw SQLiteError(code: code, connection: handle(), sql: nil) }
    }

    /// Copies what it can of the write-ahead log into the database file
    /// without waiting for readers or writers (a PASSIVE checkpoint). Once
    /// all of it is copied, the next write starts the log over from its
    /// first frame, cutting its file to `journal_size_limit`.
    public func checkpoint() throws(SQLiteError) {
        let code = sqlite3_wal_checkpoint_v2(try liveHandle(), nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        guard code == SQLITE_OK else { throw SQLiteError(code: code, connection: handle(), sql: "checkpoint") }
    }

    /// `SQLITE_DBCONFIG_DEFENSIVE`: forbids writes that can corrupt the file
    /// (writable_schema, direct shadow-table writes).
    public func setDefensive(_ on: Bool) throws(SQLiteError) {
        let code = tokenkeeper_sqlite_db_config_defensive(try liveHandle(), on ? 1 : 0)
        guard code == SQLITE_OK else { throw SQLiteError(code: code, connection: handle(), sql: nil) }
    }

    private func integerPragma(_ name: String) throws(SQLiteError) -> Int64 {
        switch try pragma(name) {
        case .integer(let value): return value
        case let other:
            throw SQLiteError(code: SQLITE_MISMATCH, message: "PRAGMA \(name) answered \(other)", sql: "PRAGMA \(name)")
        }
    }

    private func handle() -> OpaquePointer? {
        try? liveHandle()
    }

    private static func checkIdentifier(_ text: String) throws(SQLiteError) {
        let valid =
            !text.isEmpty
            && text.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == 0x5F
            }
        guard valid else {
            throw SQLiteError.misuse("PRAGMA name or keyword must be an identifier", sql: "PRAGMA")
        }
    }
}
