import TokenKeeperCore

/// What the refresh scheduler needs (``TokenKeeperCore/AccountStore``).
extension AccountVault {
    /// Every active account's deadline, never later than the moment a fifth
    /// of its access token's life is left by the gateway's own `expire_time`
    /// (the stated life, else the time from when it was stored to its
    /// expiry, else 25 minutes: five minutes before expiry): a deadline written
    /// while the local clock was wrong (and corrected while the daemon was
    /// down) cannot make a refresh late.
    /// The access token's expiry comes with it only where it is less than
    /// an hour after the stored deadline (so less than an hour after the
    /// capped one too; ``TokenKeeperCore/ScheduledAccount/expireTime``): a
    /// million expiries read for nothing cost a tenth of a second before READY.
    /// Read from the covering index `accounts_schedule` (keeper.db v4).
    static let scheduleSQL = """
        SELECT app, seller_id, CASE
            WHEN refreshable = 1 AND expire_time IS NOT NULL
            THEN min(
                coalesce(next_refresh_at, updated_at),
                expire_time - max(coalesce(nullif(access_lifetime_ms, 0), expire_time - refreshed_at, 1500000), 0) / 5)
            ELSE coalesce(next_refresh_at, updated_at) END,
            CASE WHEN expire_time < coalesce(next_refresh_at, updated_at) + 3600000 THEN expire_time END
        FROM accounts WHERE status = 'active'
        """

    func loadSchedule() throws -> [ScheduledAccount] {
        try ensureOpen()
        return try keeper.cachedStatement(Self.scheduleSQL).rows { row in
            ScheduledAccount(
                try Self.key(row, 0), due: Timestamp(millisecondsSince1970: row.int64(2)),
                expireTime: AccountRow.timestamp(row, 3))
        }
    }

    /// Accounts written since `cursor`: by another process (`PRAGMA
    /// data_version` moved) or through this store. Removed sellers come from
    /// the tombstones, with no deadline.
    func changes(since cursor: ChangeCursor?) throws -> (changed: [ScheduledAccount], cursor: ChangeCursor) {
        try ensureOpen()
        // Read before the query: a commit in between is then seen again next
        // time rather than missed.
        let dataVersion = try keeper.dataVersion()
        if let cursor, cursor.dataVersion == dataVersion, lastOwnSequence <= cursor.sequence {
            return ([], cursor)
        }
        return try keeper.transaction(.deferred) {
            let sequence =
                try keeper.cachedStatement("SELECT seq FROM change_counter WHERE id = 1").firstRow { $0.int64(0) } ?? 0
            let next = ChangeCursor(dataVersion: dataVersion, sequence: sequence)
            guard let cursor else { return ([], next) }
            // A cursor ahead of the counter comes from a keeper.db that has
            // since been replaced (a restore): report everything again.
            let since = cursor.sequence > sequence ? 0 : cursor.sequence
            let changed = try keeper.cachedStatement(
                """
                SELECT app, seller_id,
                    CASE WHEN status = 'active' THEN coalesce(next_refresh_at, updated_at) END, expire_time
                FROM accounts WHERE change_seq > ?1
                UNION ALL
                SELECT app, seller_id, NULL, NULL FROM removed_accounts WHERE change_seq > ?1
                """
            ).rows([since]) { row in
                ScheduledAccount(
                    try Self.key(row, 0), due: AccountRow.timestamp(row, 2), expireTime: AccountRow.timestamp(row, 3))
            }
            return (changed, next)
        }
    }

    func acquireLease(account key: AccountKey, owner: String, until: Timestamp, now: Timestamp) throws -> LeaseResult {
        try write { _ in
            // Read inside the write transaction: what is returned is what the
            // lease protects until it is released.
            guard var account = try fetchAccount(key) else { return .notFound }
            if let lease = account.lease, lease.owner != owner,
                lease.expiresAt > now || LeaseOwnerLiveness.isAlive(lease.owner)
            {
                // An expired lease of a live owner stands: it lapsed because
                // that owner could not renew it (the store failing while it
                // holds a rotated pair), and the refresh token stored here is
                // one the gateway may have rotated away.
                return .busy(lease)
            }
            // A lease left behind by another owner means that refresher died
            // or hung mid-attempt: it may have sent the refresh token and lost
            // the answer, so a rejection next is RotationLost.
            let takeover = account.lease.map { $0.owner != owner } ?? false
            try keeper.execute(
                """
                UPDATE accounts SET lease_owner = ?, lease_expires_at = ?, answer_lost = (answer_lost OR ?)
                WHERE app = ? AND seller_id = ?
                """,
                [owner, until.stored, takeover] + key.bound)
            account.lease = Lease(owner: owner, expiresAt: until)
            account.lastAnswerLost = account.lastAnswerLost || takeover
            return .acquired(account)
        }
    }

    func releaseLease(account key: AccountKey, owner: String) throws {
        try write { _ in
            try keeper.execute(
                """
                UPDATE accounts SET lease_owner = NULL, lease_expires_at = NULL
                WHERE app = ? AND seller_id = ? AND lease_owner = ?
                """,
                key.bound + [owner])
        }
    }

    /// The stored refresh token, compared inside the write transaction.
    private func storedRefreshTokenIs(_ sent: Secret, account key: AccountKey) throws -> Bool {
        let stored = try keeper.cachedStatement("SELECT refresh_token FROM accounts WHERE app = ? AND seller_id = ?")
            .firstRow(key.bound) { $0.string(0) }
        return stored == sent.exposedValue
    }

    /// Stores what the answer carried and keeps what it left out: a missing
    /// refresh token was not rotated (or, after a final grant, is never sent
    /// again); a missing access token leaves the stored one and its expiry.
    func commitRotation(
        account key: AccountKey, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) throws -> Bool {
        try write { write in
            guard try storedRefreshTokenIs(sent, account: key) else {
                // This very commit may have landed before an error hid it.
                guard let rotated = grant.refreshToken else { return false }
                return try storedRefreshTokenIs(rotated, account: key)
            }
            let sequence = try write.changeSequence()
            let profile = grant.profile
            let hasAccessToken = grant.accessToken != nil
            try keeper.execute(
                """
                UPDATE accounts SET
                    refresh_token = coalesce(?, refresh_token), access_token = coalesce(?, access_token),
                    expire_time = CASE WHEN ? THEN ? ELSE expire_time END,
                    access_lifetime_ms = CASE WHEN ? THEN ? ELSE access_lifetime_ms END,
                    refreshable = ?,
                    status = CASE WHEN status = 'reauth_required' THEN 'active' ELSE status END,
                    status_reason = CASE WHEN status = 'disabled' THEN status_reason END,
                    next_refresh_at = ?, failed_attempts = 0, last_error = NULL, answer_lost = 0,
                    last_request_id = coalesce(?, last_request_id), refreshed_at = ?,
                    lease_owner = NULL, lease_expires_at = NULL,
                    user_id = coalesce(?, user_id), user_nick = coalesce(?, user_nick),
                    account = coalesce(?, account), account_platform = coalesce(?, account_platform),
                    sp = coalesce(?, sp), locale = coalesce(?, locale), country = coalesce(?, country),
                    updated_at = ?, change_seq = ?
                WHERE app = ? AND seller_id = ?
                """,
                [
                    grant.refreshToken?.exposedValue, grant.accessToken?.exposedValue,
                    hasAccessToken, grant.expireTime.stored, hasAccessToken,
                    grant.accessTokenLifetime.wholeMilliseconds,
                    !grant.isFinalGrant, nextRefreshAt.stored, grant.requestID,
                    grant.receivedAt.stored, profile.userID, profile.userNick, profile.account,
                    profile.accountPlatform, profile.sp, profile.locale, profile.country, now.stored, sequence,
                ] + key.bound)
            try replaceVentures(of: key, with: profile.ventures)
            if let validity = grant.refreshTokenValidTime {
                // Apart, and only when it changed: a rotation keeps the
                // validity, and then touches no index on it.
                try keeper.execute(
                    """
                    UPDATE accounts SET refresh_token_valid_time = ?1, reauth_warned = 0
                    WHERE app = ?2 AND seller_id = ?3 AND refresh_token_valid_time IS NOT ?1
                    """, [validity.stored] + key.bound)
            }
            var detail =
                grant.refreshToken.map { "rotated \(sent) to \($0)" } ?? "refresh token \(sent) kept (not rotated)"
            detail +=
                grant.accessToken == nil
                ? "; no access token in the answer" : "; access token expires \(grant.expireTime)"
            if grant.isFinalGrant { detail += "; final grant (refresh_expires_in 0)" }
            if !grant.anomalies.isEmpty { detail += "; sanitized: " + grant.anomalies.joined(separator: ", ") }
            try insertEvent(.refreshed, account: key, detail: detail, requestID: grant.requestID, at: now)
            write.touch(key)
            return true
        }
    }

    func recordFailure(
        account key: AccountKey, owner: String, failure: GatewayFailure, failedAttempts: Int,
        nextRefreshAt: Timestamp, now: Timestamp
    ) throws -> Bool {
        try write { write in
            // Only the lease's owner records its failure: a lease that lapsed
            // and was taken over belongs to someone else now.
            let holder = try keeper.cachedStatement(
                "SELECT lease_owner FROM accounts WHERE app = ? AND seller_id = ?"
            ).firstRow(key.bound) { $0.optionalString(0) }
            guard case .some(.some(owner)) = holder else { return false }
            // Neither tokens nor status change: updated_at and tokens.db stay as they are.
            try keeper.execute(
                """
                UPDATE accounts SET failed_attempts = ?, last_error = ?, last_request_id = ?, next_refresh_at = ?,
                    answer_lost = (answer_lost OR ?), lease_owner = NULL, lease_expires_at = NULL, change_seq = ?
                WHERE app = ? AND seller_id = ?
                """,
                [
                    failedAttempts, "\(failure.code): \(failure.message)", failure.requestID, nextRefreshAt.stored,
                    failure.answerMayBeLost, try write.changeSequence(),
                ] + key.bound)
            try insertEvent(
                .refreshFailed, account: key,
                detail: "\(failure.code): \(failure.message); attempt \(failedAttempts), next try \(nextRefreshAt)",
                requestID: failure.requestID, at: now)
            return true
        }
    }

    func noteRefusedPair(account key: AccountKey, owner: String, reason: String, until: Timestamp, now: Timestamp)
        throws -> Bool
    {
        try write { _ in
            try keeper.execute(
                """
                UPDATE accounts SET last_error = ?, lease_expires_at = ?
                WHERE app = ? AND seller_id = ? AND lease_owner = ?
                """,
                [reason, until.stored] + key.bound + [owner])
            guard keeper.changes > 0 else { return false }
            try insertEvent(.refreshFailed, account: key, detail: reason, requestID: nil, at: now)
            return true
        }
    }

    func markReauthRequired(
        account key: AccountKey, sent: Secret, reason: String, requestID: String?, now: Timestamp
    ) throws -> Bool {
        try write { write in
            guard try storedRefreshTokenIs(sent, account: key) else { return false }
            try keeper.execute(
                """
                UPDATE accounts SET status = 'reauth_required', status_reason = ?,
                    last_request_id = coalesce(?, last_request_id), next_refresh_at = NULL,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, change_seq = ?
                WHERE app = ? AND seller_id = ?
                """,
                [reason, requestID, now.stored, try write.changeSequence()] + key.bound)
            try insertEvent(.reauthRequired, account: key, detail: reason, requestID: requestID, at: now)
            write.touch(key)
            return true
        }
    }

    /// Moves every stored deadline and lease by `offset`: the wall clock was
    /// stepped, and what was written before the step is to keep its distance
    /// from now (see ``SQLiteAccountStore/shiftSchedules(by:)``).
    func shiftSchedules(by offset: Duration) throws {
        let milliseconds = offset.wholeMilliseconds
        guard milliseconds != 0 else { return }
        try write { write in
            try keeper.execute(
                """
                UPDATE accounts SET next_refresh_at = next_refresh_at + ?1,
                    lease_expires_at = lease_expires_at + ?1, change_seq = ?2
                WHERE next_refresh_at IS NOT NULL OR lease_expires_at IS NOT NULL
                """,
                [milliseconds, try write.changeSequence()])
        }
    }

    /// Deletes events older than `cutoff`, at most `limit` of them, and says
    /// how many went. Small batches keep each write transaction short, so
    /// pruning never holds a refresh's commit back for long.
    func pruneEvents(before cutoff: Timestamp, limit: Int) throws -> Int {
        try write { _ in
            try keeper.execute(Self.pruneSQL, [cutoff.stored, max(1, limit)])
            return keeper.changes
        }
    }

    /// An event still to be delivered stays until it is (or is given up).
    /// Oldest first by time, so that the time index finds them: ordered by
    /// id, SQLite reads every event (a second at a million, once an hour).
    static let pruneSQL = """
        DELETE FROM events WHERE id IN (
            SELECT id FROM events WHERE at < ? AND id NOT IN (
                SELECT event_id FROM deliveries WHERE delivered_at IS NULL AND abandoned_at IS NULL)
            ORDER BY at, id LIMIT ?)
        """

    func fetchExists(_ key: AccountKey) throws -> Bool {
        try keeper.cachedStatement("SELECT 1 FROM accounts WHERE app = ? AND seller_id = ?")
            .firstRow(key.bound) { _ in true } ?? false
    }

    /// The key in columns `index` (app) and `index + 1` (seller id).
    static func key(_ row: SQLiteRow, _ index: Int) throws -> AccountKey {
        let appText = row.string(index)
        let sellerID = row.string(index + 1)
        guard let app = AppName(rawValue: appText) else {
            throw SQLiteStoreError.damagedRow(sellerID: sellerID, problem: "invalid app name '\(appText)'")
        }
        return AccountKey(app: app, sellerID: sellerID)
    }

    /// Replaces the account's ventures (the sellers a Lazada account serves)
    /// with `ventures`, inside the current write; an empty list (an
    /// AliExpress answer, or one without `country_user_info`) keeps them.
    func replaceVentures(of key: AccountKey, with ventures: [VentureSeller]) throws {
        guard !ventures.isEmpty else { return }
        try keeper.cachedStatement("DELETE FROM ventures WHERE app = ? AND account_id = ?").run(key.bound)
        let insert = try keeper.cachedStatement(
            """
            INSERT OR REPLACE INTO ventures (app, account_id, country, seller_id, user_id, short_code)
            VALUES (?, ?, ?, ?, ?, ?)
            """)
        for venture in ventures {
            try insert.run(key.bound + [venture.country, venture.sellerID, venture.userID, venture.shortCode])
        }
    }
}
