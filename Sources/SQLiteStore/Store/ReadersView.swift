public import TokenKeeperCore

/// tokens.db as a reader sees it, read-only: for commands run by a user that
/// may read tokens.db but not write the storage directory.
public enum ReadersView {
    /// One seller's row in `tokens`.
    public struct Row: Sendable, Equatable {
        public var app: String
        public var sellerID: String
        public var accessToken: Secret
        public var expireTime: Timestamp
        public var status: AccountStatus?
        public var statusReason: String?
    }

    /// The seller's rows (of `app`, or of every app that has the seller),
    /// empty when tokens.db has none.
    ///
    /// - Throws: ``SQLiteError`` when tokens.db cannot be opened or read.
    public static func rows(sellerID: String, app: AppName?, directory: String) throws -> [Row] {
        let connection = try SQLiteConnection(path: directory + "/tokens.db", flags: .readOnly)
        defer { try? connection.close() }
        try connection.setBusyTimeout(.seconds(5))
        // A tokens.db of the single-app release (version 1, before a daemon
        // of this one opened it) has no `app`: its rows are the app `default`'s.
        let version = try connection.userVersion()
        let appColumn = version >= 2 ? "app" : "'default'"
        let statement = try connection.prepare(
            """
            SELECT seller_id, access_token, expire_time, status, status_reason, \(appColumn) FROM tokens
            WHERE seller_id = ?1 AND (?2 IS NULL OR \(appColumn) = ?2) ORDER BY \(appColumn)
            """)
        defer { statement.finalize() }
        return try statement.rows([sellerID, app?.rawValue]) { row in
            Row(
                app: row.string(5), sellerID: row.string(0), accessToken: Secret(row.string(1)),
                expireTime: Timestamp(millisecondsSince1970: row.int64(2)),
                status: AccountStatus(rawValue: row.string(3)), statusReason: row.optionalString(4))
        }
    }
}
