import TokenKeeperCore

/// What the command line does to accounts: enroll, import, enable, disable,
/// remove, list; and the events.
extension AccountVault {
    /// Inserts an account or replaces the tokens of an existing one and makes
    /// it active: the statement behind both `add --code` and `import`.
    /// The profile keeps stored fields the new values leave out; the lease,
    /// if any, is left to its holder. The last parameter says whether an
    /// account that tokenkeeper manages (active or disabled) is replaced; a
    /// `reauth_required` one always is, since a new token is its only way back.
    static let upsertAccountSQL = """
        INSERT INTO accounts (
            app, seller_id, refresh_token, access_token, expire_time, access_lifetime_ms, refresh_token_valid_time,
            refreshable, status, status_reason, next_refresh_at, failed_attempts, last_error, last_request_id,
            refreshed_at, user_id, user_nick, account, account_platform, sp, locale, country, created_at,
            updated_at, change_seq)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', NULL, ?, 0, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (app, seller_id) DO UPDATE SET
            refresh_token = excluded.refresh_token, access_token = excluded.access_token,
            expire_time = excluded.expire_time, access_lifetime_ms = excluded.access_lifetime_ms,
            refresh_token_valid_time = excluded.refresh_token_valid_time, refreshable = excluded.refreshable,
            status = 'active', status_reason = NULL, next_refresh_at = excluded.next_refresh_at,
            failed_attempts = 0, last_error = NULL,
            last_request_id = coalesce(excluded.last_request_id, last_request_id),
            refreshed_at = excluded.refreshed_at,
            user_id = coalesce(excluded.user_id, user_id), user_nick = coalesce(excluded.user_nick, user_nick),
            account = coalesce(excluded.account, account),
            account_platform = coalesce(excluded.account_platform, account_platform),
            sp = coalesce(excluded.sp, sp), locale = coalesce(excluded.locale, locale),
            country = coalesce(excluded.country, country), updated_at = excluded.updated_at, change_seq = excluded.change_seq,
            answer_lost = 0, reauth_warned = 0
        WHERE ? OR accounts.status = 'reauth_required'
        """

    static func profileValues(_ profile: SellerProfile) -> [(any SQLiteBindable)?] {
        [
            profile.userID, profile.userNick, profile.account, profile.accountPlatform, profile.sp, profile.locale,
            profile.country,
        ]
    }

    func enroll(app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) throws -> Account {
        guard
            let account = try enroll(
                app: app, grant: grant, nextRefreshAt: nextRefreshAt, now: now, replacingManaged: true)
        else { throw SQLiteStoreError.unknownSeller(grant.sellerID) }
        return account
    }

    /// As ``enroll(app:grant:nextRefreshAt:now:)``; with `replacingManaged`
    /// false, an account tokenkeeper manages (active or disabled) is left as
    /// it is and nil returned.
    func enroll(app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp, replacingManaged: Bool)
        throws -> Account?
    {
        guard let refreshToken = grant.refreshToken else {
            throw SQLiteStoreError.invalidAccount(
                sellerID: grant.sellerID, problem: "the grant carries no refresh token")
        }
        let record = ImportRecord(
            sellerID: grant.sellerID, refreshToken: refreshToken, accessToken: grant.accessToken,
            expireTime: grant.expireTime, refreshTokenValidTime: grant.refreshTokenValidTime)
        if let problem = record.problem {
            throw SQLiteStoreError.invalidAccount(sellerID: grant.sellerID, problem: problem)
        }
        return try write { write in
            let key =
                try accountServing(grant.profile.ventures, app: app) ?? AccountKey(app: app, sellerID: grant.sellerID)
            let existed = try fetchExists(key)
            try keeper.execute(
                Self.upsertAccountSQL,
                key.bound + [
                    refreshToken.exposedValue, grant.accessToken?.exposedValue,
                    grant.expireTime.stored, grant.accessTokenLifetime.wholeMilliseconds,
                    grant.refreshTokenValidTime?.stored, !grant.isFinalGrant, nextRefreshAt.stored, grant.requestID,
                    grant.receivedAt.stored,
                ] + Self.profileValues(grant.profile) + [
                    now.stored, now.stored, try write.changeSequence(), replacingManaged,
                ])
            guard keeper.changes > 0 else { return nil }
            try keeper.execute("DELETE FROM removed_accounts WHERE app = ? AND seller_id = ?", key.bound)
            try replaceVentures(of: key, with: grant.profile.ventures)
            try insertEvent(
                .enrolled, account: key,
                detail: (existed ? "re-authorized" : "new account") + "; access token expires \(grant.expireTime)",
                requestID: grant.requestID, at: now)
            write.touch(key)
            guard let account = try fetchAccount(key) else {
                throw SQLiteStoreError.unknownSeller(grant.sellerID)
            }
            return try withVentures([account])[0]
        }
    }

    /// The stored account of `app` that already serves one of `ventures`
    /// (keyed by it, or listing it), or nil. A Lazada account is keyed by the
    /// first seller its answer lists; an authorization that lists them in
    /// another order is still the same account, not a second one beside it.
    func accountServing(_ ventures: [VentureSeller], app: AppName) throws -> AccountKey? {
        let keyed = try keeper.cachedStatement("SELECT 1 FROM accounts WHERE app = ? AND seller_id = ?")
        let listed = try keeper.cachedStatement(
            "SELECT account_id FROM ventures WHERE app = ? AND seller_id = ? ORDER BY account_id LIMIT 1")
        for venture in ventures {
            let candidate = AccountKey(app: app, sellerID: venture.sellerID)
            if try keyed.firstRow(candidate.bound, { _ in true }) == true { return candidate }
            if let account = try listed.firstRow(candidate.bound, { $0.string(0) }) {
                return AccountKey(app: app, sellerID: account)
            }
        }
        return nil
    }

    /// SQLite's page cache per connection during an import, in KiB.
    static let importCacheKiB: Int64 = 64 << 10

    /// The longest an import keeps keeper.db's write lock in one transaction
    /// (and about what it then keeps tokens.db's, copying the same rows).
    ///
    /// Another process that writes meanwhile (the daemon storing a rotated
    /// pair) waits for the transaction in progress: bounded by time, not by a
    /// count of rows, that wait stays short on a slow machine or build too.
    /// Each transaction costs a commit (an fsync): 100 ms keeps them few.
    static let importTransactionBudget: Duration = .milliseconds(100)

    /// Rows stored between two looks at the clock.
    static let importBudgetCheckRows = 32

    /// Stores valid records in transactions of at most `batchSize` records
    /// and about `transactionBudget` each, with prepared statements reused
    /// across the batch; refuses invalid ones by index. Sellers tokenkeeper
    /// already manages are skipped unless `replace`: their stored refresh
    /// token has most likely been rotated since the input was written, and
    /// the input's is dead.
    func importAccounts(
        _ records: [ImportRecord], replace: Bool, batchSize: Int, now: Timestamp,
        transactionBudget: Duration = importTransactionBudget
    ) throws -> ImportSummary {
        try ensureOpen()
        // A large batch dirties more pages than SQLite's default cache (2 MiB)
        // holds; spilled pages are written to the WAL again and again. For
        // the import's length, both caches hold a whole batch.
        try keeper.setPragma("cache_size", to: .integer(-Self.importCacheKiB))
        try tokens.setPragma("cache_size", to: .integer(-Self.importCacheKiB))
        defer {
            _ = try? keeper.setPragma("cache_size", to: .integer(-2000))
            _ = try? tokens.setPragma("cache_size", to: .integer(-2000))
        }
        var summary = ImportSummary()
        var valid: [(index: Int, record: ImportRecord)] = []
        valid.reserveCapacity(records.count)
        for (index, record) in records.enumerated() {
            if let problem = record.problem {
                summary.refused.append(RefusedRecord(index: index, sellerID: record.sellerID, problem: problem))
            } else {
                valid.append((index, record))
            }
        }
        let readersCopy = ImportReadersCopy(vault: self)
        defer { readersCopy.wait() }
        var start = 0
        let size = max(1, batchSize)
        while start < valid.count {
            let limit = min(start + size, valid.count)
            var end = start
            var skipped: [AccountKey] = []
            let sequence: Int64
            do {
                // The sellers stored carry this batch's change sequence (the
                // skipped ones keep theirs): their tombstones, events and
                // readers' rows are written set-wise from it.
                sequence = try write { write in
                    let sequence = try write.changeSequence()
                    let upsert = try keeper.cachedStatement(Self.upsertAccountSQL)
                    let deadline = ContinuousClock.now + transactionBudget
                    while end < limit {
                        // Checked every few rows: a clock read costs less
                        // than a row, but not nothing.
                        if end > start, (end - start) % Self.importBudgetCheckRows == 0,
                            ContinuousClock.now >= deadline
                        {
                            break
                        }
                        let record = valid[end].record
                        end += 1
                        try upsert.run { bind throws(SQLiteError) in
                            let hasAccessToken = record.accessToken != nil
                            try bind(record.key.app.rawValue)
                            try bind(record.key.sellerID)
                            try bind(record.refreshToken.exposedValue)
                            try bind(record.accessToken?.exposedValue)
                            try bind(hasAccessToken ? record.expireTime?.stored : nil)
                            try bind(hasAccessToken ? record.accessTokenLifetime?.wholeMilliseconds : nil)
                            try bind(record.refreshTokenValidTime?.stored)
                            try bind(true)
                            try bind((record.nextRefreshAt ?? now).stored)
                            try bind(String?.none)  // last_request_id
                            try bind(hasAccessToken ? now.stored : nil)
                            let profile = record.profile
                            try bind(profile.userID)
                            try bind(profile.userNick)
                            try bind(profile.account)
                            try bind(profile.accountPlatform)
                            try bind(profile.sp)
                            try bind(profile.locale)
                            try bind(profile.country)
                            try bind(now.stored)
                            try bind(now.stored)
                            try bind(sequence)
                            try bind(replace)
                        }
                        if keeper.changes == 0 {
                            skipped.append(record.key)
                        } else {
                            try replaceVentures(of: record.key, with: record.profile.ventures)
                        }
                    }
                    try keeper.execute(
                        """
                        DELETE FROM removed_accounts WHERE (app, seller_id) IN (
                            SELECT app, seller_id FROM accounts WHERE change_seq = ?)
                        """, [sequence])
                    try keeper.execute(
                        """
                        INSERT INTO events (at, app, seller_id, kind)
                        SELECT ?, app, seller_id, ? FROM accounts WHERE change_seq = ? ORDER BY app, seller_id
                        """, [now.stored, EventKind.imported.rawValue, sequence])
                    return sequence
                }
            } catch let error as SQLiteError {
                throw SQLiteStoreError.importInterrupted(imported: summary.imported, error: error)
            }
            readersCopy.start(writtenWith: sequence, count: end - start - skipped.count)
            summary.imported += end - start - skipped.count
            summary.alreadyManaged += skipped
            start = end
        }
        return summary
    }

    func setStatus(account key: AccountKey, to status: AccountStatus, nextRefreshAt: Timestamp?, now: Timestamp)
        throws -> Account
    {
        try write { write in
            guard let account = try fetchAccount(key) else { throw SQLiteStoreError.unknownSeller("\(key)") }
            if account.status == .reauthRequired || status == .reauthRequired {
                throw SQLiteStoreError.needsReauthorization(sellerID: "\(key)")
            }
            guard account.status != status else { return account }
            switch status {
            case .disabled:
                try keeper.execute(
                    """
                    UPDATE accounts SET status = 'disabled', status_reason = ?, updated_at = ?, change_seq = ?
                    WHERE app = ? AND seller_id = ?
                    """,
                    [StatusReason.disabledByOperator, now.stored, try write.changeSequence()] + key.bound)
                try insertEvent(.disabled, account: key, at: now)
            case .active, .reauthRequired:
                try keeper.execute(
                    """
                    UPDATE accounts SET status = 'active', status_reason = NULL, failed_attempts = 0, last_error = NULL,
                        next_refresh_at = ?, updated_at = ?, change_seq = ?
                    WHERE app = ? AND seller_id = ?
                    """,
                    [(nextRefreshAt ?? now).stored, now.stored, try write.changeSequence()] + key.bound)
                try insertEvent(.enabled, account: key, at: now)
            }
            write.touch(key)
            return try fetchAccount(key) ?? account
        }
    }

    func remove(account key: AccountKey, now: Timestamp) throws {
        try write { write in
            guard try fetchExists(key) else { throw SQLiteStoreError.unknownSeller("\(key)") }
            let sequence = try write.changeSequence()
            try keeper.execute("DELETE FROM accounts WHERE app = ? AND seller_id = ?", key.bound)
            try keeper.execute("DELETE FROM ventures WHERE app = ? AND account_id = ?", key.bound)
            try keeper.execute(
                """
                INSERT INTO removed_accounts (app, seller_id, removed_at, change_seq) VALUES (?, ?, ?, ?)
                ON CONFLICT (app, seller_id) DO UPDATE SET
                    removed_at = excluded.removed_at, change_seq = excluded.change_seq
                """,
                key.bound + [now.stored, sequence])
            try insertEvent(.removed, account: key, at: now)
            write.touch(key)
        }
    }

    func account(_ key: AccountKey) throws -> Account? {
        try ensureOpen()
        return try fetchAccount(key).map { try withVentures([$0])[0] }
    }

    /// `accounts` with their ventures (a Lazada account's sellers, the one
    /// it is keyed by first, then by country), as a copy to another store
    /// (`migrate --to postgres`) must carry them.
    func withVentures(_ accounts: [Account]) throws -> [Account] {
        let statement = try keeper.cachedStatement(
            """
            SELECT country, seller_id, user_id, short_code FROM ventures WHERE app = ?1 AND account_id = ?2
            ORDER BY seller_id <> ?2, country
            """)
        return try accounts.map { account in
            var account = account
            account.profile.ventures = try statement.rows(account.key.bound) { row in
                VentureSeller(
                    country: row.string(0), sellerID: row.string(1), userID: row.optionalString(2),
                    shortCode: row.optionalString(3))
            }
            return account
        }
    }

    func accountKey(app: AppName, servingSeller sellerID: String) throws -> AccountKey? {
        try ensureOpen()
        return try accountServing([VentureSeller(country: "", sellerID: sellerID)], app: app)
    }

    func accountKeys(sellerID: String) throws -> [AccountKey] {
        try ensureOpen()
        return try keeper.cachedStatement("SELECT app, seller_id FROM accounts WHERE seller_id = ? ORDER BY app")
            .rows([sellerID]) { try Self.key($0, 0) }
    }

    func accounts(app: AppName?, after key: AccountKey?, limit: Int) throws -> [Account] {
        try ensureOpen()
        // Keyset paging on the primary key: each page costs one index seek,
        // however far into the table it is.
        if let app {
            // A key of another app bounds the page at that app's start or end.
            var after = ""
            if let key {
                if key.app > app { return [] }
                if key.app == app { after = key.sellerID }
            }
            return try keeper.cachedStatement(
                """
                SELECT \(AccountRow.columns) FROM accounts WHERE app = ? AND seller_id > ?
                ORDER BY app, seller_id LIMIT ?
                """
            ).rows([app.rawValue, after, max(1, limit)], AccountRow.decode).withVentures(from: self)
        }
        return try keeper.cachedStatement(
            """
            SELECT \(AccountRow.columns) FROM accounts WHERE (app, seller_id) > (?, ?)
            ORDER BY app, seller_id LIMIT ?
            """
        ).rows([key?.app.rawValue ?? "", key?.sellerID ?? "", max(1, limit)], AccountRow.decode)
            .withVentures(from: self)
    }

    func allAccounts() throws -> [Account] {
        try ensureOpen()
        let statement = try keeper.prepare("SELECT \(AccountRow.columns) FROM accounts ORDER BY app, seller_id")
        defer { statement.finalize() }
        return try statement.rows([], AccountRow.decode)
    }

    /// Sellers that must authorize again, from their partial index: cheap
    /// enough for the daemon to count once a minute at a million sellers.
    func countReauthRequired() throws -> Int {
        try ensureOpen()
        return try keeper.cachedStatement("SELECT count(*) FROM accounts WHERE status = 'reauth_required'")
            .firstRow { Int($0.int64(0)) } ?? 0
    }

    func statusCounts() throws -> [AppName: [AccountStatus: Int]] {
        try ensureOpen()
        // Counted per status, each from its partial index (a GROUP BY status
        // reads the whole table: 1.2 s at a million sellers); each index
        // leads with the app, so grouping by it reads the index in order.
        let rows = try keeper.cachedStatement(
            """
            SELECT app, 'active', count(*) FROM accounts WHERE status = 'active' GROUP BY app
            UNION ALL SELECT app, 'reauth_required', count(*) FROM accounts WHERE status = 'reauth_required' GROUP BY app
            UNION ALL SELECT app, 'disabled', count(*) FROM accounts WHERE status = 'disabled' GROUP BY app
            """
        ).rows([]) { row in (row.string(0), row.string(1), Int(row.int64(2))) }
        var counts: [AppName: [AccountStatus: Int]] = [:]
        for (app, status, count) in rows {
            guard let app = AppName(rawValue: app), let status = AccountStatus(rawValue: status) else { continue }
            // Every status of an app that has accounts, zero where none has it.
            counts[app, default: Dictionary(uniqueKeysWithValues: AccountStatus.allCases.map { ($0, 0) })][
                status, default: 0] += count
        }
        return counts
    }

    func appendEvent(
        kind: EventKind, app: AppName?, sellerID: String?, detail: String?, requestID: String?, at: Timestamp
    ) throws {
        try write { _ in
            try insertEvent(kind, app: app, sellerID: sellerID, detail: detail, requestID: requestID, at: at)
        }
    }
}

extension [Account] {
    fileprivate func withVentures(from vault: AccountVault) throws -> [Account] {
        try vault.withVentures(self)
    }
}
