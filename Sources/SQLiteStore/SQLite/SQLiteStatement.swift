import CSQLite

/// A prepared statement: bind typed values, step through rows, reset, reuse.
///
/// The run helpers (``run(_:)``, ``rows(_:_:)``, ``firstRow(_:_:)``) always
/// reset the statement when they return, so that a cached statement never
/// keeps a read transaction (and with it an old WAL snapshot) open.
///
/// Not thread-safe: use it on the connection's own thread or executor.
public final class SQLiteStatement {
    private var handle: OpaquePointer?
    /// The SQL as prepared, with `?` placeholders: safe to log.
    public let sql: String

    init(handle: OpaquePointer, sql: String) {
        self.handle = handle
        self.sql = sql
    }

    deinit {
        sqlite3_finalize(handle)
    }

    /// How many `?` parameters the statement takes.
    public var parameterCount: Int {
        handle.map { Int(sqlite3_bind_parameter_count($0)) } ?? 0
    }

    /// True for statements that do not write (`SELECT`, most `PRAGMA`s).
    public var isReadOnly: Bool {
        handle.map { sqlite3_stmt_readonly($0) != 0 } ?? true
    }

    /// Resets the statement and binds `values` to its parameters, in order.
    ///
    /// - Throws: ``SQLiteError`` when the number of values differs from
    ///   ``parameterCount`` (no value is echoed in the message).
    public func bind(_ values: [(any SQLiteBindable)?]) throws(SQLiteError) {
        let handle = try liveHandle()
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        let expected = Int(sqlite3_bind_parameter_count(handle))
        guard values.count == expected else {
            throw SQLiteError(
                code: SQLITE_RANGE, message: "\(values.count) values bound to \(expected) parameters", sql: sql)
        }
        for (offset, value) in values.enumerated() {
            try bind(value?.sqliteValue ?? .null, at: offset + 1)
        }
    }

    /// Binds one value to parameter `index` (1-based, as in SQLite).
    public func bind(_ value: SQLiteValue, at index: Int) throws(SQLiteError) {
        let handle = try liveHandle()
        let position = Int32(index)
        let code: Int32
        switch value {
        case .null:
            code = sqlite3_bind_null(handle, position)
        case .integer(let integer):
            code = sqlite3_bind_int64(handle, position, integer)
        case .real(let real):
            code = sqlite3_bind_double(handle, position, real)
        case .text(let text):
            // SQLITE_TRANSIENT: SQLite copies the bytes before this call
            // returns, so the Swift buffer may go away afterwards.
            var text = text
            code = text.withUTF8 { bytes in
                guard let start = bytes.baseAddress, !bytes.isEmpty else {
                    // A null pointer would bind NULL, not the empty string.
                    return sqlite3_bind_text(handle, position, "", 0, tokenkeeper_sqlite_transient())
                }
                return start.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                    sqlite3_bind_text64(
                        handle, position, $0, sqlite3_uint64(bytes.count), tokenkeeper_sqlite_transient(),
                        UInt8(SQLITE_UTF8))
                }
            }
        }
        guard code == SQLITE_OK else {
            throw SQLiteError(code: code, connection: sqlite3_db_handle(handle), sql: sql)
        }
    }

    /// Advances to the next row: true when a row is available, false when done.
    public func step() throws(SQLiteError) -> Bool {
        let handle = try liveHandle()
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let code:
            let error = SQLiteError(code: code, connection: sqlite3_db_handle(handle), sql: sql)
            sqlite3_reset(handle)
            throw error
        }
    }

    /// The current row; only valid after ``step()`` returned true.
    public var row: SQLiteRow {
        get throws(SQLiteError) { SQLiteRow(statement: try liveHandle()) }
    }

    /// Rewinds the statement so it can run again; keeps the bindings.
    public func reset() {
        if let handle { sqlite3_reset(handle) }
    }

    /// Sets every parameter back to NULL.
    public func clearBindings() {
        if let handle { sqlite3_clear_bindings(handle) }
    }

    /// Releases the statement; using it afterwards throws `SQLITE_MISUSE`.
    public func finalize() {
        sqlite3_finalize(handle)
        handle = nil
    }

    /// Binds `values` and runs the statement to completion, ignoring rows.
    public func run(_ values: [(any SQLiteBindable)?] = []) throws(SQLiteError) {
        try bind(values)
        defer { reset() }
        while try step() {}
    }

    /// Binds the values `body` hands to its binder, in parameter order, and
    /// runs the statement to completion, ignoring rows. Each value is bound
    /// as its own type: no array of existentials is built (for a row written
    /// a million times, an import's, that cost an eighth of the writing).
    ///
    /// - Throws: ``SQLiteError`` when the number of values bound differs
    ///   from ``parameterCount``.
    public func run(binding body: (inout Binder) throws(SQLiteError) -> Void) throws(SQLiteError) {
        let handle = try liveHandle()
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        var binder = Binder(statement: self)
        try body(&binder)
        let expected = Int(sqlite3_bind_parameter_count(handle))
        guard binder.count == expected else {
            throw SQLiteError(
                code: SQLITE_RANGE, message: "\(binder.count) values bound to \(expected) parameters", sql: sql)
        }
        defer { reset() }
        while try step() {}
    }

    /// Binds values to a statement's parameters one after another (``run(binding:)``).
    public struct Binder {
        let statement: SQLiteStatement
        /// How many values were bound.
        private(set) var count = 0

        /// Binds `value` (nil: NULL) to the next parameter.
        public mutating func callAsFunction(_ value: (some SQLiteBindable)?) throws(SQLiteError) {
            count += 1
            try statement.bind(value?.sqliteValue ?? .null, at: count)
        }
    }

    /// Binds `values` and decodes every row with `decode`.
    public func rows<T>(
        _ values: [(any SQLiteBindable)?] = [], _ decode: (SQLiteRow) throws -> T
    ) throws -> [T] {
        try bind(values)
        defer { reset() }
        var result: [T] = []
        while try step() {
            result.append(try decode(try row))
        }
        return result
    }

    /// Binds `values` and decodes the first row, if there is one.
    public func firstRow<T>(
        _ values: [(any SQLiteBindable)?] = [], _ decode: (SQLiteRow) throws -> T
    ) throws -> T? {
        try bind(values)
        defer { reset() }
        guard try step() else { return nil }
        return try decode(try row)
    }

    private func liveHandle() throws(SQLiteError) -> OpaquePointer {
        guard let handle else { throw SQLiteError.misuse("statement is finalized", sql: sql) }
        return handle
    }
}
