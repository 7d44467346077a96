import CSQLite
import Foundation

/// A reader of tokenkeeper's databases as another program would be: the C
/// API, read-only, retrying while the daemon holds a write lock.
struct SQLiteReader {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `sql` on the file at `path` and returns every row, columns as text (nil for NULL).
    static func query(_ path: String, _ sql: String) throws -> [[String?]] {
        var handle: OpaquePointer?
        guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READONLY, nil) == SQLITE_OK, let db = handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw Failure(description: "cannot open \(path): \(message)")
        }
        defer { sqlite3_close(db) }
        sqlite3_busy_timeout(db, 5000)
        for attempt in 0..<50 {
            var statement: OpaquePointer?
            var code = sqlite3_prepare_v2(db, sql, -1, &statement, nil)
            var rows: [[String?]] = []
            if code == SQLITE_OK {
                repeat {
                    code = sqlite3_step(statement)
                    if code == SQLITE_ROW {
                        rows.append(
                            (0..<sqlite3_column_count(statement)).map { index in
                                sqlite3_column_text(statement, index).map { String(cString: $0) }
                            })
                    }
                } while code == SQLITE_ROW
            }
            sqlite3_finalize(statement)
            if code == SQLITE_DONE { return rows }
            let retryable = code == SQLITE_BUSY || (code & 0xFF) == SQLITE_READONLY || code == SQLITE_LOCKED
            if !retryable || attempt == 49 {
                throw Failure(description: "\(sql): \(String(cString: sqlite3_errmsg(db))) (\(code))")
            }
            usleep(20_000)
        }
        return []
    }
}

/// A `tokens.db` row as readers see it.
struct ReaderRow: Equatable {
    var sellerID: String
    var accessToken: String
    var expireTime: Int64
    var status: String
    var statusReason: String?

    static func all(in storage: String) throws -> [ReaderRow] {
        try SQLiteReader.query(
            storage + "/tokens.db",
            "SELECT seller_id, access_token, expire_time, status, status_reason FROM tokens ORDER BY seller_id"
        ).map { row in
            ReaderRow(
                sellerID: row[0] ?? "", accessToken: row[1] ?? "", expireTime: Int64(row[2] ?? "") ?? 0,
                status: row[3] ?? "", statusReason: row[4])
        }
    }
}

/// The truth in keeper.db: each seller's status and current refresh token.
struct KeeperRow: Equatable {
    var sellerID: String
    var refreshToken: String
    var status: String

    static func all(in storage: String) throws -> [String: KeeperRow] {
        let rows = try SQLiteReader.query(
            storage + "/keeper.db", "SELECT seller_id, refresh_token, status FROM accounts")
        var result: [String: KeeperRow] = [:]
        for row in rows {
            result[row[0] ?? ""] = KeeperRow(sellerID: row[0] ?? "", refreshToken: row[1] ?? "", status: row[2] ?? "")
        }
        return result
    }
}

func nowMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
}
