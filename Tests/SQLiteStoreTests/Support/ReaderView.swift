import Foundation
import SQLiteStore
import TokenKeeperTesting

/// What a reader sees in tokens.db, read through a separate read-only
/// connection, as another program would.
struct ReaderRow: Equatable, CustomStringConvertible {
    var values: [SQLiteValue]

    var sellerID: String { if case .text(let text) = values[0] { text } else { "" } }
    var accessToken: String { if case .text(let text) = values[7] { text } else { "" } }
    var status: String { if case .text(let text) = values[10] { text } else { "" } }

    // Never print a token, even when an expectation fails.
    var description: String { "ReaderRow(\(sellerID), \(status))" }
}

enum ReaderView {
    /// The contract's columns (docs/DATABASE.md), written out here rather
    /// than taken from the implementation.
    static let columns =
        "seller_id, user_id, user_nick, account, account_platform, sp, locale, access_token, expire_time, "
        + "reauth_by, status, status_reason, refreshed_at, updated_at"

    static func rows(_ scratch: ScratchDirectory) throws -> [ReaderRow] {
        let connection = try SQLiteConnection(path: scratch.tokensPath, flags: [.readOnly])
        defer { try? connection.close() }
        return try connection.prepare("SELECT \(columns) FROM tokens ORDER BY seller_id").rows { row in
            ReaderRow(values: (0..<row.count).map { row.value($0) })
        }
    }

    static func validSellers(_ scratch: ScratchDirectory) throws -> [String] {
        let connection = try SQLiteConnection(path: scratch.tokensPath, flags: [.readOnly])
        defer { try? connection.close() }
        return try connection.prepare("SELECT seller_id FROM valid_tokens ORDER BY seller_id").rows { $0.string(0) }
    }

    /// Runs SQL against a database file through its own connection, as an
    /// outsider (or damage) would.
    static func tamper(_ path: String, _ sql: String, _ values: [(any SQLiteBindable)?] = []) throws {
        let connection = try SQLiteConnection(path: path)
        try connection.setPersistentWAL(true)
        try connection.execute(sql, values)
        try connection.close()
    }
}

enum SQLiteReaderForTests {
    /// The first column of every row, as text, through a read-only connection of its own.
    static func column(_ path: String, _ sql: String) throws -> [String] {
        let connection = try SQLiteConnection(path: path, flags: [.readOnly])
        defer { try? connection.close() }
        return try connection.prepare(sql).rows { row in
            switch row.value(0) {
            case .text(let text): text
            case .integer(let number): String(number)
            case .real(let number): String(number)
            case .null: "NULL"
            }
        }
    }
}
