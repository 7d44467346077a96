import Foundation
import Logging
import PostgresNIO
public import TokenKeeperCore

/// What the commands need: enrolling, importing, copying from keeper.db,
/// reading accounts and counts.
extension PostgresAccountStore {
    /// One account row as JSON, for set-wise writes through
    /// `jsonb_to_recordset` (absent keys are NULL).
    // The names are the table's columns, which jsonb_to_recordset matches.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    struct AccountRecord: Encodable {
        var app: String
        var seller_id: String
        var refresh_token: String
        var access_token: String?
        var expire_time: Int64?
        var access_lifetime_ms: Int64?
        var refresh_token_valid_time: Int64?
        var refreshable: Bool
        var status: String
        var status_reason: String?
        var next_refresh_at: Int64?
        var failed_attempts: Int
        var last_error: String?
        var last_request_id: String?
        var refreshed_at: Int64?
        var lease_owner: String?
        var lease_expires_at: Int64?
        var user_id: String?
        var user_nick: String?
        var account: String?
        var account_platform: String?
        var sp: String?
        var locale: String?
        var country: String?
        var answer_lost: Bool
        var created_at: Int64
        var updated_at: Int64

        init(_ account: Account, createdAt: Timestamp) {
            app = account.app.rawValue
            seller_id = account.sellerID
            refresh_token = account.refreshToken.exposedValue
            access_token = account.accessToken?.exposedValue
            expire_time = account.expireTime?.millisecondsSince1970
            access_lifetime_ms = account.accessTokenLifetime?.wholeMilliseconds
            refresh_token_valid_time = account.refreshTokenValidTime?.millisecondsSince1970
            refreshable = account.isRefreshable
            status = account.status.rawValue
            status_reason = account.statusReason
            next_refresh_at = account.nextRefreshAt?.millisecondsSince1970
            failed_attempts = account.failedAttempts
            last_error = account.lastError
            last_request_id = account.lastRequestID
            refreshed_at = account.refreshedAt?.millisecondsSince1970
            lease_owner = account.lease?.owner
            lease_expires_at = account.lease?.expiresAt.millisecondsSince1970
            user_id = account.profile.userID
            user_nick = account.profile.userNick
            self.account = account.profile.account
            account_platform = account.profile.accountPlatform
            sp = account.profile.sp
            locale = account.profile.locale
            country = account.profile.country
            answer_lost = account.lastAnswerLost
            created_at = createdAt.millisecondsSince1970
            updated_at = account.updatedAt.millisecondsSince1970
        }
    }

    static let recordColumns = """
        app text, seller_id text, refresh_token text, access_token text, expire_time bigint, \
        access_lifetime_ms bigint, refresh_token_valid_time bigint, refreshable boolean, status text, \
        status_reason text, next_refresh_at bigint, failed_attempts integer, last_error text, last_request_id text, \
        refreshed_at bigint, lease_owner text, lease_expires_at bigint, user_id text, user_nick text, account text, \
        account_platform text, sp text, locale text, country text, answer_lost boolean, created_at bigint, \
        updated_at bigint
        """
    static let insertColumns = """
        app, seller_id, refresh_token, access_token, expire_time, access_lifetime_ms, refresh_token_valid_time, \
        refreshable, status, status_reason, next_refresh_at, failed_attempts, last_error, last_request_id, \
        refreshed_at, lease_owner, lease_expires_at, user_id, user_nick, account, account_platform, sp, locale, \
        country, answer_lost, created_at, updated_at
        """

    static func json(_ records: [AccountRecord]) throws -> String {
        String(decoding: try JSONEncoder().encode(records), as: UTF8.self)
    }

    /// Imports sellers as keeper.db's import does: one transaction per
    /// `batchSize`; a seller already managed (active or disabled) is skipped
    /// unless `replace`; a `reauth_required` one gets the new tokens, and
    /// the ventures its record lists. Every node hears of it once ('*'),
    /// not once per seller.
    public func importAccounts(
        _ records: [ImportRecord], replace: Bool = false, batchSize: Int? = nil, now: Timestamp
    ) async throws -> ImportSummary {
        let batchSize = batchSize ?? 5000
        var summary = ImportSummary()
        var valid: [ImportRecord] = []
        var seen = Set<AccountKey>()
        for (index, record) in records.enumerated() {
            if let problem = record.problem {
                summary.refused.append(RefusedRecord(index: index, sellerID: record.sellerID, problem: problem))
            } else if !seen.insert(record.key).inserted {
                summary.alreadyManaged.append(record.key)
            } else {
                valid.append(record)
            }
        }
        var start = 0
        while start < valid.count {
            let batch = valid[start..<min(start + max(1, batchSize), valid.count)]
            let rows = batch.map { record in
                var account = Account(
                    app: record.app, sellerID: record.sellerID, profile: record.profile,
                    refreshToken: record.refreshToken, accessToken: record.accessToken,
                    expireTime: record.accessToken == nil ? nil : record.expireTime,
                    accessTokenLifetime: record.accessToken == nil ? nil : record.accessTokenLifetime,
                    refreshTokenValidTime: record.refreshTokenValidTime, nextRefreshAt: record.nextRefreshAt ?? now,
                    refreshedAt: record.accessToken == nil ? nil : now, updatedAt: now)
                account.status = .active
                return AccountRecord(account, createdAt: now)
            }
            let json = try Self.json(rows)
            let ventures = try Self.json(batch.flatMap { Self.ventureRecords($0.profile.ventures, of: $0.key) })
            let stored: Set<AccountKey> = try await bulk { connection in
                let upserted = try await Self.rows(
                    connection.query(
                        """
                        WITH upserted AS (
                            INSERT INTO \(unescaped: s).accounts (\(unescaped: Self.insertColumns))
                            SELECT \(unescaped: Self.insertColumns)
                            FROM jsonb_to_recordset(\(json)::jsonb) AS r(\(unescaped: Self.recordColumns))
                            ON CONFLICT (app, seller_id) DO UPDATE SET
                                refresh_token = excluded.refresh_token, access_token = excluded.access_token,
                                expire_time = excluded.expire_time, access_lifetime_ms = excluded.access_lifetime_ms,
                                refresh_token_valid_time = excluded.refresh_token_valid_time, refreshable = true,
                                status = 'active', status_reason = NULL, next_refresh_at = excluded.next_refresh_at,
                                failed_attempts = 0, last_error = NULL, refreshed_at = excluded.refreshed_at,
                                user_id = coalesce(excluded.user_id, accounts.user_id),
                                user_nick = coalesce(excluded.user_nick, accounts.user_nick),
                                account = coalesce(excluded.account, accounts.account),
                                account_platform = coalesce(excluded.account_platform, accounts.account_platform),
                                sp = coalesce(excluded.sp, accounts.sp), locale = coalesce(excluded.locale, accounts.locale),
                                country = coalesce(excluded.country, accounts.country),
                                updated_at = excluded.updated_at, answer_lost = false, reauth_warned = false,
                                lease_owner = NULL, lease_expires_at = NULL
                            WHERE \(replace) OR accounts.status = 'reauth_required'
                            RETURNING app, seller_id),
                        listed AS (
                            SELECT * FROM jsonb_to_recordset(\(ventures)::jsonb)
                                AS r(\(unescaped: Self.ventureColumns))),
                        \(unescaped: venturesReplacement(written: "upserted"))
                        INSERT INTO \(unescaped: s).events (at, app, seller_id, kind)
                        SELECT \(now.millisecondsSince1970), app, seller_id, 'imported' FROM upserted
                        ORDER BY app, seller_id
                        RETURNING app, seller_id
                        """, logger: logger))
                return Set(try upserted.map { try Self.key(from: $0) })
            }
            summary.imported += stored.count
            summary.alreadyManaged += batch.map(\.key).filter { !stored.contains($0) }
            start += batch.count
        }
        return summary
    }

    /// Runs `body` in one transaction whose row triggers announce nothing,
    /// then announces '*' (everything) with the commit.
    func bulk<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await transaction { connection in
            try await connection.query("SELECT set_config('tokenkeeper.bulk', 'on', true)", logger: logger)
            let value = try await body(connection)
            try await connection.query("SELECT pg_notify(\(channel), '*')", logger: logger)
            return value
        }
    }

    /// Copies accounts as they are (status, failures, times, the ventures
    /// their profiles list; no lease) into the schema, in one transaction:
    /// `migrate --to postgres` gives it a page of keeper.db at a time.
    public func copyAccounts(_ accounts: [Account], now: Timestamp) async throws {
        let rows = accounts.map { account in
            var account = account
            account.lease = nil
            return AccountRecord(account, createdAt: now)
        }
        let json = try Self.json(rows)
        let ventures = try Self.json(accounts.flatMap { Self.ventureRecords($0.profile.ventures, of: $0.key) })
        _ = try await bulk { connection in
            try await connection.query(
                """
                INSERT INTO \(unescaped: s).accounts (\(unescaped: Self.insertColumns))
                SELECT \(unescaped: Self.insertColumns)
                FROM jsonb_to_recordset(\(json)::jsonb) AS r(\(unescaped: Self.recordColumns))
                """, logger: logger)
            try await connection.query(
                """
                INSERT INTO \(unescaped: s).ventures (app, account_id, country, seller_id, user_id, short_code)
                SELECT app, account_id, country, seller_id, user_id, short_code
                FROM jsonb_to_recordset(\(ventures)::jsonb) AS r(\(unescaped: Self.ventureColumns))
                """, logger: logger)
        }
    }

    /// Fails unless this user may write the accounts on a primary (not a
    /// read-only standby).
    public func checkWritable() async throws {
        let rows = try await run(
            """
            SELECT NOT pg_is_in_recovery() AND has_table_privilege(\(settings.schema + ".accounts"), 'INSERT, UPDATE')
            """)
        guard try rows.first?.first?.decode(Bool.self) == true else {
            throw PostgresStoreError.server(
                sqlState: "42501", message: "the accounts cannot be written here (a standby, or no INSERT/UPDATE right)"
            )
        }
    }

    /// Deletes events older than `cutoff`, `batchSize` at a time (short
    /// statements; any node may run it, two at once do no harm). An event
    /// still to be delivered on some channel stays until it is (or is given
    /// up); the rest go with their outbox and delivery rows (the schema's
    /// cascades). Returns how many were deleted.
    @discardableResult
    public func pruneEvents(before cutoff: Timestamp, batchSize: Int = 5000) async throws -> Int {
        let batchSize = max(1, batchSize)
        var total = 0
        while true {
            let deleted = try await run(
                """
                DELETE FROM \(unescaped: s).events WHERE id IN (
                    SELECT e.id FROM \(unescaped: s).events e
                    WHERE e.at < \(cutoff.millisecondsSince1970) AND NOT EXISTS (
                        SELECT 1 FROM \(unescaped: s).deliveries d
                        WHERE d.event_id = e.id AND d.delivered_at IS NULL AND d.abandoned_at IS NULL)
                    ORDER BY e.at, e.id LIMIT \(batchSize))
                RETURNING id
                """
            ).count
            total += deleted
            if deleted < batchSize { return total }
        }
    }

    /// How many sellers the schema holds.
    public func accountCount() async throws -> Int {
        try await run("SELECT count(*) FROM \(unescaped: s).accounts").first?.first?.decode(Int.self) ?? 0
    }

    /// One account as stored, or nil.
    public func account(_ key: AccountKey) async throws -> Account? {
        let found = try await run(
            """
            SELECT \(unescaped: Self.accountColumns) FROM \(unescaped: s).accounts
            WHERE app = \(key.app.rawValue) AND seller_id = \(key.sellerID)
            """
        )
        .first.map(Self.account(from:))
        guard let found else { return nil }
        return try await withVentures([found])[0]
    }

    /// `accounts` with their ventures (a Lazada account's sellers, the one
    /// it is keyed by first, then by country), as keeper.db's reads give them.
    func withVentures(_ accounts: [Account]) async throws -> [Account] {
        guard !accounts.isEmpty else { return accounts }
        let rows = try await run(
            """
            SELECT app, account_id, country, seller_id, user_id, short_code FROM \(unescaped: s).ventures
            WHERE (app, account_id) IN (
                SELECT * FROM unnest(\(accounts.map(\.app.rawValue))::text[], \(accounts.map(\.sellerID))::text[]))
            ORDER BY app, account_id, seller_id <> account_id, country
            """)
        var ventures: [AccountKey: [VentureSeller]] = [:]
        for row in rows {
            let key = AccountKey(
                app: try Self.app(stored: try row[0].decode(String.self)), sellerID: try row[1].decode(String.self))
            ventures[key, default: []].append(
                VentureSeller(
                    country: try row[2].decode(String.self), sellerID: try row[3].decode(String.self),
                    userID: try row[4].decode(String?.self), shortCode: try row[5].decode(String?.self)))
        }
        return accounts.map { account in
            var account = account
            account.profile.ventures = ventures[account.key] ?? []
            return account
        }
    }

    /// The accounts with this seller id, one per app, by app.
    public func accountKeys(sellerID: String) async throws -> [AccountKey] {
        try await run(
            """
            SELECT app FROM \(unescaped: s).accounts WHERE seller_id = \(sellerID) ORDER BY app COLLATE "C"
            """
        ).map { AccountKey(app: try Self.app(stored: try $0[0].decode(String.self)), sellerID: sellerID) }
    }

    /// The account of `app` keyed by `sellerID` or listing it among its sellers.
    public func accountKey(app: AppName, servingSeller sellerID: String) async throws -> AccountKey? {
        try await accountServing([VentureSeller(country: "", sellerID: sellerID)], app: app)
    }

    /// At most `limit` accounts of `app` (of every app when nil) after
    /// `key`, by app and seller id (`C` collation, bytewise as in keeper.db).
    public func accounts(app: AppName?, after key: AccountKey?, limit: Int) async throws -> [Account] {
        // Before any account when no key is given: no app name is empty.
        let (afterApp, afterSellerID) = (key?.app.rawValue ?? "", key?.sellerID ?? "")
        let page = try await run(
            """
            SELECT \(unescaped: Self.accountColumns) FROM \(unescaped: s).accounts
            WHERE (\(app?.rawValue)::text IS NULL OR app = \(app?.rawValue))
              AND (app COLLATE "C", seller_id COLLATE "C") > (\(afterApp), \(afterSellerID))
            ORDER BY app COLLATE "C", seller_id COLLATE "C" LIMIT \(limit)
            """
        ).map(Self.account(from:))
        return try await withVentures(page)
    }

    /// How many accounts of each app have each status (every status, 0 when
    /// none, for each app that has accounts).
    public func statusCounts() async throws -> [AppName: [AccountStatus: Int]] {
        let none = Dictionary(uniqueKeysWithValues: AccountStatus.allCases.map { ($0, 0) })
        var counts: [AppName: [AccountStatus: Int]] = [:]
        for row in try await run("SELECT app, status, count(*) FROM \(unescaped: s).accounts GROUP BY app, status") {
            let app = try Self.app(stored: try row[0].decode(String.self))
            if let status = AccountStatus(rawValue: try row[1].decode(String.self)) {
                counts[app, default: none][status] = try row[2].decode(Int.self)
            }
        }
        return counts
    }

    /// Stores a seller of `app` from an authorization code, new or
    /// re-authorized: active, with its failures and status reason cleared;
    /// the profile keeps stored fields the grant leaves out, and the
    /// ventures it lists replace the stored ones. A `reauth_required`
    /// seller moving to active gets its `reactivated` event from the
    /// schema's trigger, whatever wrote the new token.
    public func enroll(app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) async throws
        -> Account
    {
        guard
            let account = try await enroll(
                app: app, grant: grant, nextRefreshAt: nextRefreshAt, now: now, replacingManaged: true)
        else { throw PostgresStoreError.unknownSeller(AccountKey(app: app, sellerID: grant.sellerID)) }
        return account
    }

    /// As ``enroll(app:grant:nextRefreshAt:now:)``; with `replacingManaged`
    /// false, a seller tokenkeeper manages (active or disabled) is left as
    /// it is and nil returned (a `reauth_required` one always gets the new
    /// tokens: they are its only way back).
    func enroll(
        app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp, replacingManaged: Bool
    ) async throws -> Account? {
        let key =
            try await accountServing(grant.profile.ventures, app: app) ?? AccountKey(app: app, sellerID: grant.sellerID)
        guard let refreshToken = grant.refreshToken else {
            throw PostgresStoreError.invalidAccount(key, problem: "the grant carries no refresh token")
        }
        let record = ImportRecord(
            app: app, sellerID: key.sellerID, refreshToken: refreshToken, accessToken: grant.accessToken,
            expireTime: grant.expireTime, refreshTokenValidTime: grant.refreshTokenValidTime)
        if let problem = record.problem {
            throw PostgresStoreError.invalidAccount(key, problem: problem)
        }
        let account = Account(
            app: app, sellerID: key.sellerID, profile: grant.profile, refreshToken: refreshToken,
            accessToken: grant.accessToken,
            expireTime: grant.expireTime, accessTokenLifetime: grant.accessTokenLifetime,
            refreshTokenValidTime: grant.refreshTokenValidTime, isRefreshable: !grant.isFinalGrant,
            nextRefreshAt: nextRefreshAt, lastRequestID: grant.requestID, refreshedAt: grant.receivedAt, updatedAt: now)
        let json = try Self.json([AccountRecord(account, createdAt: now)])
        let ventures = try Self.json(Self.ventureRecords(grant.profile.ventures, of: key))
        // `xmax = 0` in RETURNING: the row was inserted, not updated (an
        // existing seller is "re-authorized", as in keeper.db's event).
        let stored = try await run(
            """
            WITH upserted AS (
                INSERT INTO \(unescaped: s).accounts (\(unescaped: Self.insertColumns))
                SELECT \(unescaped: Self.insertColumns)
                FROM jsonb_to_recordset(\(json)::jsonb) AS r(\(unescaped: Self.recordColumns))
                ON CONFLICT (app, seller_id) DO UPDATE SET
                    refresh_token = excluded.refresh_token, access_token = excluded.access_token,
                    expire_time = excluded.expire_time, access_lifetime_ms = excluded.access_lifetime_ms,
                    refresh_token_valid_time = excluded.refresh_token_valid_time, refreshable = excluded.refreshable,
                    status = 'active', status_reason = NULL, next_refresh_at = excluded.next_refresh_at,
                    failed_attempts = 0, last_error = NULL,
                    last_request_id = coalesce(excluded.last_request_id, accounts.last_request_id),
                    refreshed_at = excluded.refreshed_at,
                    user_id = coalesce(excluded.user_id, accounts.user_id),
                    user_nick = coalesce(excluded.user_nick, accounts.user_nick),
                    account = coalesce(excluded.account, accounts.account),
                    account_platform = coalesce(excluded.account_platform, accounts.account_platform),
                    sp = coalesce(excluded.sp, accounts.sp), locale = coalesce(excluded.locale, accounts.locale),
                    country = coalesce(excluded.country, accounts.country),
                    updated_at = excluded.updated_at,
                    answer_lost = false, reauth_warned = false, lease_owner = NULL, lease_expires_at = NULL
                WHERE \(replacingManaged) OR accounts.status = 'reauth_required'
                RETURNING \(unescaped: Self.accountColumns), (xmax = 0) AS inserted),
            event AS (
                INSERT INTO \(unescaped: s).events (at, app, seller_id, kind, detail, request_id)
                SELECT \(now.millisecondsSince1970), app, seller_id, 'enrolled',
                    CASE WHEN inserted THEN 'new account' ELSE 're-authorized' END
                        || \("; access token expires \(grant.expireTime)"),
                    \(grant.requestID)
                FROM upserted),
            listed AS (SELECT * FROM jsonb_to_recordset(\(ventures)::jsonb) AS r(\(unescaped: Self.ventureColumns))),
            \(unescaped: venturesReplacement(written: "upserted"))
            SELECT \(unescaped: Self.accountColumns) FROM upserted
            """)
        guard let account = try stored.first.map(Self.account(from:)) else { return nil }
        return try await withVentures([account])[0]
    }

    /// Disables or enables an account (not one that needs re-authorization).
    public func setStatus(
        account: AccountKey, to status: AccountStatus, nextRefreshAt: Timestamp? = nil, now: Timestamp
    ) async throws -> Account {
        guard status != .reauthRequired else {
            throw PostgresStoreError.invalidAccount(account, problem: "only a refresh can require re-authorization")
        }
        let rows = try await run(
            """
            UPDATE \(unescaped: s).accounts SET status = \(status.rawValue),
                status_reason = CASE WHEN \(status.rawValue) = 'disabled' THEN \(StatusReason.disabledByOperator) END,
                failed_attempts = CASE WHEN \(status.rawValue) = 'active' THEN 0 ELSE failed_attempts END,
                next_refresh_at = CASE WHEN \(status.rawValue) = 'active'
                    THEN \((nextRefreshAt ?? now).millisecondsSince1970) ELSE next_refresh_at END,
                updated_at = \(now.millisecondsSince1970)
            WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID) AND status <> 'reauth_required'
            RETURNING \(unescaped: Self.accountColumns)
            """)
        guard let row = rows.first else {
            if try await self.account(account) == nil { throw PostgresStoreError.unknownSeller(account) }
            throw PostgresStoreError.invalidAccount(
                account, problem: "needs re-authorization first ('tokenkeeper add --code')")
        }
        _ = try await run(
            """
            INSERT INTO \(unescaped: s).events (at, app, seller_id, kind)
            VALUES (
                \(now.millisecondsSince1970), \(account.app.rawValue), \(account.sellerID),
                \(status == .active ? "enabled" : "disabled"))
            """)
        return try Self.account(from: row)
    }

    /// Removes an account (its ventures with it, the schema's cascade);
    /// its events stay.
    public func remove(account: AccountKey, now: Timestamp) async throws {
        let rows = try await run(
            """
            WITH removed AS (
                DELETE FROM \(unescaped: s).accounts
                WHERE app = \(account.app.rawValue) AND seller_id = \(account.sellerID)
                RETURNING app, seller_id)
            INSERT INTO \(unescaped: s).events (at, app, seller_id, kind)
            SELECT \(now.millisecondsSince1970), app, seller_id, 'removed' FROM removed RETURNING id
            """)
        if rows.isEmpty { throw PostgresStoreError.unknownSeller(account) }
    }

    /// Accounts and refresh tokens after `key`, by app and seller id
    /// (bytewise, as ``accounts(app:after:limit:)``): what `migrate`
    /// verifies the copy with.
    public func refreshTokens(after key: AccountKey?, limit: Int) async throws -> [(AccountKey, Secret)] {
        let (afterApp, afterSellerID) = (key?.app.rawValue ?? "", key?.sellerID ?? "")
        return try await run(
            """
            SELECT app, seller_id, refresh_token FROM \(unescaped: s).accounts
            WHERE (app COLLATE "C", seller_id COLLATE "C") > (\(afterApp), \(afterSellerID))
            ORDER BY app COLLATE "C", seller_id COLLATE "C" LIMIT \(limit)
            """
        ).map { (try Self.key(from: $0), Secret(try $0[2].decode(String.self))) }
    }
}

/// One row of the schema's `events` table.
extension PostgresAccountStore {
    /// The newest `limit` events matching, newest first.
    public func events(_ query: EventQuery) async throws -> [StoredEvent] {
        let (app, sellerID, since) = (query.app?.rawValue, query.sellerID, query.since)
        let (kind, limit) = (query.kind?.rawValue, query.limit)
        return try await run(
            """
            SELECT id, at, app, seller_id, kind, detail, request_id, node FROM \(unescaped: s).events
            WHERE (\(app)::text IS NULL OR app = \(app))
              AND (\(sellerID)::text IS NULL OR seller_id = \(sellerID))
              AND (\(since?.millisecondsSince1970)::bigint IS NULL OR at >= \(since?.millisecondsSince1970))
              AND (\(kind)::text IS NULL OR kind = \(kind))
            ORDER BY id DESC LIMIT \(limit)
            """
        ).map(Self.event(from:))
    }

    /// An event from `id, at, app, seller_id, kind, detail, request_id, node`.
    static func event(from row: [PostgresCell]) throws -> StoredEvent {
        StoredEvent(
            id: try row[0].decode(Int64.self), at: Timestamp(millisecondsSince1970: try row[1].decode(Int64.self)),
            app: try row[2].decode(String?.self).map(app(stored:)), sellerID: try row[3].decode(String?.self),
            kind: EventKind(rawValue: try row[4].decode(String.self)), detail: try row[5].decode(String?.self),
            requestID: try row[6].decode(String?.self), node: try row[7].decode(String?.self))
    }

    /// The stored account of `app` that already serves one of `ventures`
    /// (keyed by it, or listing it), or nil: an authorization that lists a
    /// Lazada account's sellers in another order is the same account.
    func accountServing(_ ventures: [VentureSeller], app: AppName) async throws -> AccountKey? {
        guard !ventures.isEmpty else { return nil }
        let ids = ventures.map(\.sellerID)
        let rows = try await run(
            """
            SELECT seller_id, array_position(\(ids)::text[], seller_id) AS rank FROM \(unescaped: s).accounts
            WHERE app = \(app.rawValue) AND seller_id = ANY(\(ids)::text[])
            UNION ALL
            SELECT account_id, array_position(\(ids)::text[], seller_id) FROM \(unescaped: s).ventures
            WHERE app = \(app.rawValue) AND seller_id = ANY(\(ids)::text[])
            ORDER BY 2, 1 LIMIT 1
            """)
        guard let sellerID = try rows.first?.first?.decode(String.self) else { return nil }
        return AccountKey(app: app, sellerID: sellerID)
    }
}
