import CSQLite
public import TokenKeeperCore

/// A failure reported by SQLite: its extended result code, its message and
/// the SQL that failed.
///
/// Bound values are never part of the error (they may be tokens): the SQL is
/// the statement text with its `?` placeholders, as prepared.
public struct SQLiteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// SQLite's extended result code (e.g. 2067, `SQLITE_CONSTRAINT_UNIQUE`).
    public var code: Int32
    /// SQLite's message (`sqlite3_errmsg`), or a description of ours.
    public var message: String
    /// The SQL being prepared or run, with placeholders and no values.
    public var sql: String?

    public init(code: Int32, message: String, sql: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    /// The primary result code (e.g. 19, `SQLITE_CONSTRAINT`).
    public var primaryCode: Int32 { code & 0xFF }

    /// True for `SQLITE_BUSY` and `SQLITE_LOCKED`: another connection holds a
    /// lock for longer than the busy timeout; trying again later may work.
    public var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }

    /// True for errors tied to the values of one write (a constraint, a value
    /// too big or of the wrong type): other writes may well succeed.
    public var isAboutTheValues: Bool {
        [SQLITE_CONSTRAINT, SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE].contains(primaryCode)
    }

    /// True when the file is not an SQLite database (`SQLITE_NOTADB`).
    public var isNotADatabase: Bool { primaryCode == SQLITE_NOTADB }

    public var description: String {
        var text = "SQLite error \(code) (\(String(cString: sqlite3_errstr(code)))): \(message)"
        if let sql { text += " [SQL: \(sql)]" }
        return text
    }

    /// The error of the last failed call on `connection`, or `code` with its
    /// generic text when SQLite has no better message.
    init(code: Int32, connection: OpaquePointer?, sql: String?) {
        var message = String(cString: sqlite3_errstr(code))
        if let connection, let text = sqlite3_errmsg(connection) {
            message = String(cString: text)
        }
        self.init(code: code, message: message, sql: sql)
    }

    /// Misuse of the wrapper (a closed connection, a finalized statement).
    static func misuse(_ message: String, sql: String? = nil) -> SQLiteError {
        SQLiteError(code: SQLITE_MISUSE, message: message, sql: sql)
    }
}

extension SQLiteError: ScopedStoreError {
    /// A constraint or a value SQLite cannot hold concerns one account;
    /// another connection's lock is contention; a full disk, an I/O error, a
    /// read-only file concern them all.
    public var scope: StoreFailureScope {
        if isAboutTheValues { return .account }
        return isBusy ? .contention : .store
    }
}
