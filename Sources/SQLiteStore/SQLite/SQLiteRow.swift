import CSQLite

/// The current row of a statement that has just stepped onto a row.
///
/// Valid only inside the closure it is handed to: the next step, a reset or
/// a finalize invalidates it. Columns are numbered from 0.
public struct SQLiteRow {
    let statement: OpaquePointer

    init(statement: OpaquePointer) {
        self.statement = statement
    }

    /// How many columns the row has.
    public var count: Int { Int(sqlite3_column_count(statement)) }

    /// The name SQLite gives column `index` (its alias, if any).
    public func name(_ index: Int) -> String {
        sqlite3_column_name(statement, Int32(index)).map { String(cString: $0) } ?? ""
    }

    public func isNull(_ index: Int) -> Bool {
        sqlite3_column_type(statement, Int32(index)) == SQLITE_NULL
    }

    /// The column as an integer (SQLite converts other types; NULL gives 0).
    public func int64(_ index: Int) -> Int64 {
        sqlite3_column_int64(statement, Int32(index))
    }

    public func int(_ index: Int) -> Int {
        Int(truncatingIfNeeded: int64(index))
    }

    /// The column as a float (SQLite converts other types; NULL gives 0).
    public func double(_ index: Int) -> Double {
        sqlite3_column_double(statement, Int32(index))
    }

    /// Nonzero integers are true.
    public func bool(_ index: Int) -> Bool {
        int64(index) != 0
    }

    /// The column as UTF-8 text (NULL gives the empty string).
    public func string(_ index: Int) -> String {
        let column = Int32(index)
        // Text first, then its length: that order is what SQLite documents as safe.
        guard let text = sqlite3_column_text(statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    public func optionalInt64(_ index: Int) -> Int64? {
        isNull(index) ? nil : int64(index)
    }

    public func optionalString(_ index: Int) -> String? {
        isNull(index) ? nil : string(index)
    }

    public func optionalDouble(_ index: Int) -> Double? {
        isNull(index) ? nil : double(index)
    }

    /// The column with its own storage class.
    public func value(_ index: Int) -> SQLiteValue {
        switch sqlite3_column_type(statement, Int32(index)) {
        case SQLITE_NULL: .null
        case SQLITE_INTEGER: .integer(int64(index))
        case SQLITE_FLOAT: .real(double(index))
        default: .text(string(index))
        }
    }
}
