import TokenKeeperCore

/// The `accounts` columns an ``TokenKeeperCore/Account`` is read from, in
/// the order ``decode(_:)`` expects them.
enum AccountRow {
    static let columns = """
        seller_id, refresh_token, access_token, expire_time, access_lifetime_ms, refresh_token_valid_time, \
        refreshable, status, status_reason, next_refresh_at, failed_attempts, last_error, last_request_id, \
        refreshed_at, lease_owner, lease_expires_at, user_id, user_nick, account, account_platform, sp, locale, \
        updated_at, answer_lost, app, country
        """

    static func decode(_ row: SQLiteRow) throws -> Account {
        let sellerID = row.string(0)
        let statusText = row.string(7)
        guard let status = AccountStatus(rawValue: statusText) else {
            throw SQLiteStoreError.damagedRow(sellerID: sellerID, problem: "unknown status '\(statusText)'")
        }
        let appText = row.string(24)
        guard let app = AppName(rawValue: appText) else {
            throw SQLiteStoreError.damagedRow(sellerID: sellerID, problem: "invalid app name '\(appText)'")
        }
        var lease: Lease?
        if let owner = row.optionalString(14), let expiresAt = row.optionalInt64(15) {
            lease = Lease(owner: owner, expiresAt: Timestamp(millisecondsSince1970: expiresAt))
        }
        return Account(
            app: app, sellerID: sellerID,
            profile: SellerProfile(
                userID: row.optionalString(16), userNick: row.optionalString(17), account: row.optionalString(18),
                accountPlatform: row.optionalString(19), sp: row.optionalString(20), locale: row.optionalString(21),
                country: row.optionalString(25)),
            refreshToken: Secret(row.string(1)),
            accessToken: row.optionalString(2).map(Secret.init),
            expireTime: timestamp(row, 3),
            accessTokenLifetime: row.optionalInt64(4).map { .milliseconds($0) },
            refreshTokenValidTime: timestamp(row, 5),
            isRefreshable: row.bool(6),
            status: status,
            statusReason: row.optionalString(8),
            nextRefreshAt: timestamp(row, 9),
            failedAttempts: row.int(10),
            lastError: row.optionalString(11),
            lastRequestID: row.optionalString(12),
            refreshedAt: timestamp(row, 13),
            lease: lease,
            updatedAt: Timestamp(millisecondsSince1970: row.int64(22)),
            lastAnswerLost: row.bool(23))
    }

    static func timestamp(_ row: SQLiteRow, _ index: Int) -> Timestamp? {
        row.optionalInt64(index).map { Timestamp(millisecondsSince1970: $0) }
    }
}

extension AccountKey {
    /// The values bound for `app = ? AND seller_id = ?`.
    var bound: [(any SQLiteBindable)?] { [app.rawValue, sellerID] }
}

extension Timestamp {
    /// The value stored in INTEGER columns: epoch milliseconds.
    var stored: Int64 { millisecondsSince1970 }
}
