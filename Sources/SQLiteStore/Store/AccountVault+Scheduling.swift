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
        SELECT seller_id, CASE
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
                sellerID: row.string(0), due: Timestamp(millisecondsSince1970: row.int64(1)),
                expireTime: AccountRow.timestamp(row, 2))
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
                SELECT seller_id, CASE WHEN status = 'active' THEN coalesce(next_refresh_at, updated_at) END,
                    expire_time
                FROM accounts WHERE change_seq > ?1
                UNION ALL
                SELECT seller_id, NULL, NULL FROM removed_accounts WHERE change_seq > ?1
                """
            ).rows([since]) { row in
                ScheduledAccount(
                    sellerID: row.string(0), due: AccountRow.timestamp(row, 1), expireTime: AccountRow.timestamp(row, 2)
                )
            }
            return (changed, next)
        }
    }

    func acquireLease(sellerID: String, owner: String, until: Timestamp, now: Timestamp) throws -> LeaseResult {
        try write { _ in
            // Read inside the write transaction: what is returned is what the
            // lease protects until it is released.
            guard var account = try fetchAccount(sellerID) else { return .notFound }
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
                WHERE seller_id = ?
                """,
                [owner, until.stored, takeover, sellerID])
            account.lease = Lease(owner: owner, expiresAt: until)
            account.lastAnswerLost = account.lastAnswerLost || takeover
            return .acquired(account)
        }
    }

    func releaseLease(sellerID: String, owner: String) throws {
        try write { _ in
            try keeper.execute(
                """
                UPDATE accounts SET lease_owner = NULL, lease_expires_at = NULL
                WHERE seller_id = ? AND lease_owner = ?
                """,
                [sellerID, owner])
        }
    }

    /// The stored refresh token, compared inside the write transaction.
    private func storedRefreshTokenIs(_ sent: Secret, sellerID: String) throws -> Bool {
        let stored = try keeper.cachedStatement("SELECT refresh_token FROM accounts WHERE seller_id = ?")
            .firstRow([sellerID]) { $0.string(0) }
        return stored == sent.exposedValue
    }

    /// Stores what the answer carried and keeps what it left out: a missing
    /// refresh token was not rotated (or, after a final grant, is never sent
    /// again); a missing access token leaves the stored one and its expiry.
    func commitRotation(
        sellerID: String, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) throws -> Bool {
        try write { write in
            guard try storedRefreshTokenIs(sent, sellerID: sellerID) else {
                // This very commit may have landed before an error hid it.
                guard let rotated = grant.refreshToken else { return false }
                return try storedRefreshTokenIs(rotated, sellerID: sellerID)
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
                    sp = coalesce(?, sp), locale = coalesce(?, locale),
                    updated_at = ?, change_seq = ?
                WHERE seller_id = ?
                """,
                [
                    grant.refreshToken?.exposedValue, grant.accessToken?.exposedValue,
                    hasAccessToken, grant.expireTime.stored, hasAccessToken,
                    grant.accessTokenLifetime.wholeMilliseconds,
                    !grant.isFinalGrant, nextRefreshAt.stored, grant.requestID,
                    grant.receivedAt.stored, profile.userID, profile.userNick, profile.account,
                    profile.accountPlatform, profile.sp, profile.locale, now.stored, sequence, sellerID,
                ])
            if let validity = grant.refreshTokenValidTime {
                // Apart, and only when it changed: a rotation keeps the
                // validity, and then touches no index on it.
                try keeper.execute(
                    """
                    UPDATE accounts SET refresh_token_valid_time = ?1, reauth_warned = 0
                    WHERE seller_id = ?2 AND refresh_token_valid_time IS NOT ?1
                    """, [validity.stored, sellerID])
            }
            var detail =
                grant.refreshToken.map { "rotated \(sent) to \($0)" } ?? "refresh token \(sent) kept (not rotated)"
            detail +=
                grant.accessToken == nil
                ? "; no access token in the answer" : "; access token expires \(grant.expireTime)"
            if grant.isFinalGrant { detail += "; final grant (refresh_expires_in 0)" }
            if !grant.anomalies.isEmpty { detail += "; sanitized: " + grant.anomalies.joined(separator: ", ") }
            try insertEvent(.refreshed, sellerID: sellerID, detail: detail, requestID: grant.requestID, at: now)
            write.touch(sellerID)
            return true
        }
    }

    func recordFailure(
        sellerID: String, owner: String, failure: GatewayFailure, failedAttempts: Int, nextRefreshAt: Timestamp,
        now: Timestamp
    ) throws -> Bool {
        try write { write in
            // Only the lease's owner records its failure: a lease that lapsed
            // and was taken over belongs to someone else now.
            let holder = try keeper.cachedStatement("SELECT lease_owner FROM accounts WHERE seller_id = ?")
                .firstRow([sellerID]) { $0.optionalString(0) }
            guard case .some(.some(owner)) = holder else { return false }
            // Neither tokens nor status change: updated_at and tokens.db stay as they are.
            try keeper.execute(
                """
                UPDATE accounts SET failed_attempts = ?, last_error = ?, last_request_id = ?, next_refresh_at = ?,
                    answer_lost = (answer_lost OR ?), lease_owner = NULL, lease_expires_at = NULL, change_seq = ?
                WHERE seller_id = ?
                """,
                [
                    failedAttempts, "\(failure.code): \(failure.message)", failure.requestID, nextRefreshAt.stored,
                    failure.answerMayBeLost, try write.changeSequence(), sellerID,
                ])
            try insertEvent(
                .refreshFailed, sellerID: sellerID,
                detail: "\(failure.code): \(failure.message); attempt \(failedAttempts), next try \(nextRefreshAt)",
                requestID: failure.requestID, at: now)
            return true
        }
    }

    func noteRefusedPair(sellerID: String, owner: String, reason: String, until: Timestamp, now: Timestamp) throws
        -> Bool
    {
        try write { _ in
            try keeper.execute(
                "UPDATE accounts SET last_error = ?, lease_expires_at = ? WHERE seller_id = ? AND lease_owner = ?",
                [reason, until.stored, sellerID, owner])
            guard keeper.changes > 0 else { return false }
            try insertEvent(.refreshFailed, sellerID: sellerID, detail: reason, requestID: nil, at: now)
            return true
        }
    }

    func markReauthRequired(
        sellerID: String, sent: Secret, reason: String, requestID: String?, now: Timestamp
    ) throws -> Bool {
        try write { write in
            guard try storedRefreshTokenIs(sent, sellerID: sellerID) else { return false }
            try keeper.execute(
                """
                UPDATE accounts SET status = 'reauth_required', status_reason = ?,
                    last_request_id = coalesce(?, last_request_id), next_refresh_at = NULL,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, change_seq = ?
                WHERE seller_id = ?
                """,
                [reason, requestID, now.stored, try write.changeSequence(), sellerID])
            try insertEvent(.reauthRequired, sellerID: sellerID, detail: reason, requestID: requestID, at: now)
            write.touch(sellerID)
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

    func fetchExists(_ sellerID: String) throws -> Bool {
        try keeper.cachedStatement("SELECT 1 FROM accounts WHERE seller_id = ?").firstRow([sellerID]) { _ in true }
            ?? false
    }
}
