import Logging
import PostgresNIO
import Synchronization
public import TokenKeeperCore

/// What the refresh scheduler needs (``TokenKeeperCore/AccountStore``).
extension PostgresAccountStore {
    static let accountColumns = """
        seller_id, refresh_token, access_token, expire_time, access_lifetime_ms, refresh_token_valid_time, \
        refreshable, status, status_reason, next_refresh_at, failed_attempts, last_error, last_request_id, \
        refreshed_at, lease_owner, lease_expires_at, user_id, user_nick, account, account_platform, sp, locale, \
        answer_lost, updated_at, app, country
        """

    /// An app name as stored (the table's CHECK admits valid names only).
    static func app(stored name: String) throws -> AppName {
        guard let app = AppName(rawValue: name) else {
            throw PostgresStoreError.server(sqlState: "22023", message: "the stored app name \(name) is not valid")
        }
        return app
    }

    /// The account whose `app` and `seller_id` are `row[column]` and the cell after it.
    static func key(from row: [PostgresCell], at column: Int = 0) throws -> AccountKey {
        let stored = try app(stored: try row[column].decode(String.self))
        return AccountKey(app: stored, sellerID: try row[column + 1].decode(String.self))
    }

    static func account(from cells: [PostgresCell]) throws -> Account {
        func string(_ index: Int) throws -> String? { try cells[index].decode(String?.self) }
        func time(_ index: Int) throws -> Timestamp? {
            try cells[index].decode(Int64?.self).map { Timestamp(millisecondsSince1970: $0) }
        }
        let leaseOwner = try string(14)
        let leaseUntil = try time(15)
        return Account(
            app: try app(stored: try cells[24].decode(String.self)),
            sellerID: try cells[0].decode(String.self),
            profile: SellerProfile(
                userID: try string(16), userNick: try string(17), account: try string(18),
                accountPlatform: try string(19), sp: try string(20), locale: try string(21), country: try string(25)),
            refreshToken: Secret(try cells[1].decode(String.self)),
            accessToken: try string(2).map(Secret.init),
            expireTime: try time(3),
            accessTokenLifetime: try cells[4].decode(Int64?.self).map { .milliseconds($0) },
            refreshTokenValidTime: try time(5),
            isRefreshable: try cells[6].decode(Bool.self),
            status: AccountStatus(rawValue: try cells[7].decode(String.self)) ?? .disabled,
            statusReason: try string(8),
            nextRefreshAt: try time(9),
            failedAttempts: try cells[10].decode(Int.self),
            lastError: try string(11),
            lastRequestID: try string(12),
            refreshedAt: try time(13),
            lease: leaseOwner.flatMap { owner in leaseUntil.map { Lease(owner: owner, expiresAt: $0) } },
            updatedAt: try time(23) ?? Timestamp(millisecondsSince1970: 0),
            lastAnswerLost: try cells[22].decode(Bool.self))
    }

    /// The stored deadline, never later than a fifth of the access token's
    /// life before its expiry (as keeper.db's schedule), and the expiry.
    static let dueSQL = """
        CASE WHEN refreshable AND expire_time IS NOT NULL
            THEN least(
                coalesce(next_refresh_at, updated_at),
                expire_time - greatest(coalesce(nullif(access_lifetime_ms, 0), expire_time - refreshed_at, 1500000), 0) / 5)
            ELSE coalesce(next_refresh_at, updated_at) END
        """

    /// This node's id for the events it writes (nil for a command).
    var node: String? { cluster.withLock { $0.node } }

    public func loadSchedule() async throws -> [ScheduledAccount] {
        try await schedule(capped: true)
    }

    /// Every active seller's deadline as this node keeps it. `capped` at the
    /// start (as keeper.db's schedule); not when read again for the change
    /// feed, where a failing seller's backoff (`next_refresh_at`) must stand,
    /// as in keeper.db's change feed.
    private func schedule(capped: Bool) async throws -> [ScheduledAccount] {
        // Announcements until now are in what is read now.
        feed.withLock { $0.pending.removeAll() }
        let view = cluster.withLock { $0 }
        var schedule: [ScheduledAccount] = []
        let due = capped ? Self.dueSQL : "coalesce(next_refresh_at, updated_at)"
        do {
            let rows = try await client.query(
                """
                SELECT app, seller_id, \(unescaped: due), expire_time FROM \(unescaped: s).accounts
                WHERE status = 'active'
                """,
                logger: logger)
            for try await (app, sellerID, due, expire) in rows.decode((String, String, Int64, Int64?).self) {
                let account = AccountKey(app: try Self.app(stored: app), sellerID: sellerID)
                schedule.append(scheduled(account, due: due, expire: expire, view: view))
            }
        } catch {
            throw PostgresStoreError.from(error)
        }
        return schedule
    }

    private func scheduled(_ account: AccountKey, due: Int64?, expire: Int64?, view: ClusterView)
        -> ScheduledAccount
    {
        guard let due else { return ScheduledAccount(account, due: nil) }
        let expireTime = expire.map { Timestamp(millisecondsSince1970: $0) }
        return ScheduledAccount(
            account,
            due: view.deadline(account: account, due: Timestamp(millisecondsSince1970: due), expireTime: expireTime),
            expireTime: expireTime)
    }

    /// The accounts announced (NOTIFY) since the last call; everything when
    /// announcements may have been missed (the listener reconnected) or the
    /// live nodes changed. Touches PostgreSQL only when something was announced.
    public func changes(since cursor: ChangeCursor?) async throws -> (changed: [ScheduledAccount], cursor: ChangeCursor)
    {
        let interval = settings.fullReloadInterval
        let (announced, everything, sequence) = feed.withLock { feed in
            feed.sequence += 1
            // A full reload at most once per interval, whatever is announced:
            // until then the flag (and what it covers) waits.
            if feed.everything, let last = feed.lastFullReload, ContinuousClock.now - last < interval {
                return (Set<AccountKey>(), false, feed.sequence)
            }
            defer {
                feed.pending.removeAll()
                if feed.everything { feed.lastFullReload = .now }
                feed.everything = false
            }
            return (feed.pending, feed.everything, feed.sequence)
        }
        let next = ChangeCursor(dataVersion: 0, sequence: sequence)
        guard cursor != nil else { return ([], next) }
        do {
            if everything { return (try await schedule(capped: false), next) }
            guard !announced.isEmpty else { return ([], next) }
            let keys = Array(announced)
            let view = cluster.withLock { $0 }
            var found: [AccountKey: ScheduledAccount] = [:]
            let rows = try await run(
                """
                SELECT app, seller_id, CASE WHEN status = 'active' THEN coalesce(next_refresh_at, updated_at) END,
                    expire_time
                FROM \(unescaped: s).accounts
                WHERE (app, seller_id) IN (
                    SELECT * FROM unnest(\(keys.map(\.app.rawValue))::text[], \(keys.map(\.sellerID))::text[]))
                """)
            for row in rows {
                let account = try Self.key(from: row)
                found[account] = scheduled(
                    account, due: try row[2].decode(Int64?.self), expire: try row[3].decode(Int64?.self), view: view)
            }
            return (keys.map { found[$0] ?? ScheduledAccount($0, due: nil) }, next)
        } catch {
            // Reported again next time.
            feed.withLock { feed in
                feed.pending.formUnion(announced)
                feed.everything = feed.everything || everything
            }
            throw PostgresStoreError.from(error)
        }
    }

    /// One statement: the row lock it takes is the whole transaction. The
    /// lease's end is kept on PostgreSQL's clock (its length from `until` −
    /// `now`), so that hosts whose clocks disagree still agree on whether a
    /// lease has lapsed; the result is given back on this host's clock.
    public func acquireLease(account: AccountKey, owner: String, until: Timestamp, now: Timestamp) async throws
        -> LeaseResult
    {
        let length = max(0, (until - now).wholeMilliseconds)
        let window = cluster.withLock { $0.livenessWindow }.seconds
        for _ in 0..<3 {
            // An expired lease of a node whose heartbeat is current stands:
            // it lapsed because that node could not renew it (holding a
            // rotated pair while the store failed), not because it is gone.
            let taken = try await run(
                """
                WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms)
                UPDATE \(unescaped: s).accounts SET lease_owner = \(owner),
                    lease_expires_at = (SELECT ms FROM clock) + \(length),
                    answer_lost = answer_lost OR (lease_owner IS NOT NULL AND lease_owner <> \(owner))
                WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID)
                  AND (lease_owner IS NULL OR lease_owner = \(owner)
                    OR (lease_expires_at <= (SELECT ms FROM clock) AND NOT EXISTS (
                        SELECT 1 FROM \(unescaped: s).nodes n WHERE n.node = accounts.lease_owner
                          AND n.heartbeat_at > now() - make_interval(secs => \(window)))))
                RETURNING \(unescaped: Self.accountColumns)
                """)
            if let row = taken.first {
                var account = try Self.account(from: row)
                account.lease = Lease(owner: owner, expiresAt: until)
                return .acquired(account)
            }
            let holder = try await run(
                """
                SELECT lease_owner, lease_expires_at - (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                FROM \(unescaped: s).accounts WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID)
                """)
            guard let row = holder.first else { return .notFound }
            if let owner = try row[0].decode(String?.self), let left = try row[1].decode(Int64?.self) {
                return .busy(Lease(owner: owner, expiresAt: now + .milliseconds(max(0, left))))
            }
            // Released between the two statements: try again.
        }
        return .busy(Lease(owner: "unknown", expiresAt: now))
    }

    public func releaseLease(account: AccountKey, owner: String) async throws {
        _ = try await run(
            """
            UPDATE \(unescaped: s).accounts SET lease_owner = NULL, lease_expires_at = NULL
            WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID) AND lease_owner = \(owner)
            """)
    }

    /// Fenced by the refresh token: commits only if the stored one is still
    /// `sent`, in one statement with its event. A seller marked
    /// `reauth_required` meanwhile becomes active again, and the schema's
    /// `accounts_reactivated` trigger writes its one `reactivated` event
    /// (with this node, from `tokenkeeper.node`, set for this statement's
    /// transaction only by the `writer` step, which the fence's row reads
    /// before anything is updated). The ventures the answer lists replace
    /// the stored ones in the same statement.
    public func commitRotation(
        account: AccountKey, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) async throws -> Bool {
        let profile = grant.profile
        let hasAccessToken = grant.accessToken != nil
        var detail =
            grant.refreshToken.map { "rotated \(sent) to \($0)" } ?? "refresh token \(sent) kept (not rotated)"
        detail +=
            grant.accessToken == nil ? "; no access token in the answer" : "; access token expires \(grant.expireTime)"
        if grant.isFinalGrant { detail += "; final grant (refresh_expires_in 0)" }
        if !grant.anomalies.isEmpty { detail += "; sanitized: " + grant.anomalies.joined(separator: ", ") }
        let validity = grant.refreshTokenValidTime?.millisecondsSince1970
        let ventures = try Self.json(Self.ventureRecords(profile.ventures, of: account))
        let rows = try await run(
            """
            WITH writer AS MATERIALIZED (
                SELECT set_config('tokenkeeper.node', coalesce(\(node)::text, ''), true) AS node),
            old AS (
                SELECT a.app, a.seller_id FROM \(unescaped: s).accounts a, writer
                WHERE a.app = \(account.app.rawValue) AND a.seller_id = \(account.sellerID)
                  AND a.refresh_token = \(sent.exposedValue) AND writer.node IS NOT NULL
                FOR UPDATE OF a),
            updated AS (
                UPDATE \(unescaped: s).accounts a SET
                    refresh_token = coalesce(\(grant.refreshToken?.exposedValue), refresh_token),
                    access_token = coalesce(\(grant.accessToken?.exposedValue), access_token),
                    expire_time = CASE WHEN \(hasAccessToken) THEN \(grant.expireTime.millisecondsSince1970) ELSE expire_time END,
                    access_lifetime_ms = CASE WHEN \(hasAccessToken) THEN \(grant.accessTokenLifetime.wholeMilliseconds)
                        ELSE access_lifetime_ms END,
                    refreshable = \(!grant.isFinalGrant),
                    status = CASE WHEN a.status = 'reauth_required' THEN 'active' ELSE a.status END,
                    status_reason = CASE WHEN a.status = 'disabled' THEN a.status_reason END,
                    next_refresh_at = \(nextRefreshAt.millisecondsSince1970), failed_attempts = 0, last_error = NULL,
                    answer_lost = false, last_request_id = coalesce(\(grant.requestID), last_request_id),
                    refreshed_at = \(grant.receivedAt.millisecondsSince1970),
                    lease_owner = NULL, lease_expires_at = NULL,
                    user_id = coalesce(\(profile.userID), user_id), user_nick = coalesce(\(profile.userNick), user_nick),
                    account = coalesce(\(profile.account), account),
                    account_platform = coalesce(\(profile.accountPlatform), account_platform),
                    sp = coalesce(\(profile.sp), sp), locale = coalesce(\(profile.locale), locale),
                    country = coalesce(\(profile.country), country),
                    reauth_warned = CASE WHEN \(validity)::bigint IS NOT NULL
                        AND refresh_token_valid_time IS DISTINCT FROM \(validity)::bigint THEN false ELSE reauth_warned END,
                    refresh_token_valid_time = coalesce(\(validity)::bigint, refresh_token_valid_time),
                    updated_at = \(now.millisecondsSince1970)
                FROM old WHERE a.app = old.app AND a.seller_id = old.seller_id
                RETURNING a.app, a.seller_id),
            refreshed AS (
                INSERT INTO \(unescaped: s).events (at, app, seller_id, kind, detail, request_id, node)
                SELECT \(now.millisecondsSince1970), app, seller_id, 'refreshed', \(detail), \(grant.requestID),
                    \(node)
                FROM updated),
            listed AS (SELECT * FROM jsonb_to_recordset(\(ventures)::jsonb) AS r(\(unescaped: Self.ventureColumns))),
            \(unescaped: venturesReplacement(written: "updated"))
            SELECT seller_id FROM updated
            """)
        if !rows.isEmpty { return true }
        // This very commit may have landed before a timeout hid it.
        guard let rotated = grant.refreshToken else { return false }
        let landed = try await run(
            """
            SELECT 1 FROM \(unescaped: s).accounts
            WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID)
              AND refresh_token = \(rotated.exposedValue)
            """)
        return !landed.isEmpty
    }

    @discardableResult
    public func recordFailure(
        account: AccountKey, owner: String, failure: GatewayFailure, failedAttempts: Int, nextRefreshAt: Timestamp,
        now: Timestamp
    ) async throws -> Bool {
        // Only the lease's owner records its failure.
        let rows = try await run(
            """
            WITH updated AS (
                UPDATE \(unescaped: s).accounts SET failed_attempts = \(failedAttempts),
                    last_error = \("\(failure.code): \(failure.message)"), last_request_id = \(failure.requestID),
                    next_refresh_at = \(nextRefreshAt.millisecondsSince1970),
                    answer_lost = (answer_lost OR \(failure.answerMayBeLost)),
                    lease_owner = NULL, lease_expires_at = NULL
                WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID) AND lease_owner = \(owner)
                RETURNING app, seller_id)
            INSERT INTO \(unescaped: s).events (at, app, seller_id, kind, detail, request_id, node)
            SELECT \(now.millisecondsSince1970), app, seller_id, 'refresh_failed',
                \("\(failure.code): \(failure.message); attempt \(failedAttempts), next try \(nextRefreshAt)"),
                \(failure.requestID), \(node)
            FROM updated
            RETURNING id
            """)
        return !rows.isEmpty
    }

    /// The stored deadlines are shared by every node and on PostgreSQL's
    /// side of the clock: one host's clock step moves none of them (that
    /// host's own queue follows its clock; the caps from `expire_time` keep
    /// every refresh on time).
    public func shiftSchedules(by offset: Duration) async throws {
        logger.notice(
            "the local clock was stepped; deadlines stored in PostgreSQL are shared by every node and not moved",
            metadata: ["offset": "\(offset)"])
    }

    @discardableResult
    public func noteRefusedPair(account: AccountKey, owner: String, reason: String, until: Timestamp, now: Timestamp)
        async throws -> Bool
    {
        let length = max(0, (until - now).wholeMilliseconds)
        let rows = try await run(
            """
            WITH updated AS (
                UPDATE \(unescaped: s).accounts SET last_error = \(reason),
                    lease_expires_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + \(length)
                WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID) AND lease_owner = \(owner)
                RETURNING app, seller_id)
            INSERT INTO \(unescaped: s).events (at, app, seller_id, kind, detail, request_id, node)
            SELECT \(now.millisecondsSince1970), app, seller_id, 'refresh_failed', \(reason), NULL::text, \(node)
            FROM updated
            RETURNING id
            """)
        return !rows.isEmpty
    }

    public func markReauthRequired(
        account: AccountKey, sent: Secret, reason: String, requestID: String?, now: Timestamp
    ) async throws -> Bool {
        let rows = try await run(
            """
            WITH updated AS (
                UPDATE \(unescaped: s).accounts SET status = 'reauth_required', status_reason = \(reason),
                    last_request_id = coalesce(\(requestID), last_request_id), next_refresh_at = NULL,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = \(now.millisecondsSince1970)
                WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID)
                  AND refresh_token = \(sent.exposedValue)
                RETURNING app, seller_id)
            INSERT INTO \(unescaped: s).events (at, app, seller_id, kind, detail, request_id, node)
            SELECT \(now.millisecondsSince1970), app, seller_id, 'reauth_required', \(reason), \(requestID), \(node)
            FROM updated
            RETURNING id
            """)
        return !rows.isEmpty
    }
}
