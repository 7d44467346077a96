import TokenKeeperCore

/// The outbox and what the operator's loop needs: re-authorization warnings,
/// delivery state per channel, the callback's key and used states, and the
/// figures behind health, metrics and `status`.
extension AccountVault {
    // MARK: - Re-authorization window

    /// Raises one `reauth_due` event for each active account whose refresh
    /// token ends at or before `horizon` and that was not yet warned for
    /// that token. Storing a new refresh token validity (re-authorization,
    /// import) re-arms the warning. Returns the sellers warned now.
    /// Read from `accounts_by_reauth` once a minute (tested: another index
    /// on active sellers must not draw it into reading them all).
    static let reauthEnteringSQL = """
        SELECT app, seller_id, refresh_token_valid_time FROM accounts
        WHERE status = 'active' AND refresh_token_valid_time <= ? AND reauth_warned = 0
        ORDER BY refresh_token_valid_time LIMIT ?
        """

    func raiseReauthDue(horizon: Timestamp, now: Timestamp, limit: Int) throws -> [AccountKey] {
        try write { _ in
            let entering = try keeper.cachedStatement(Self.reauthEnteringSQL).rows([horizon.stored, max(1, limit)]) {
                row in
                (try Self.key(row, 0), Timestamp(millisecondsSince1970: row.int64(2)))
            }
            let mark = try keeper.cachedStatement(
                "UPDATE accounts SET reauth_warned = 1 WHERE app = ? AND seller_id = ?")
            for (key, reauthBy) in entering {
                try mark.run(key.bound)
                try insertEvent(.reauthDue, account: key, detail: "the refresh token ends \(reauthBy)", at: now)
            }
            return entering.map(\.0)
        }
    }

    // MARK: - Deliveries

    /// Takes on, for `channel`, every outbox event it has not seen (after
    /// the newest it has) that is dated `oldest` or later: a channel new to
    /// this store, or configured again after a while, gets no stale events.
    /// Returns how many were taken on.
    func enqueueDeliveries(channel: String, oldest: Timestamp, now: Timestamp) throws -> Int {
        try write { _ in
            try keeper.execute(
                """
                INSERT INTO deliveries (event_id, channel, taken_at, next_attempt_at)
                SELECT o.event_id, ?1, ?2, ?2 FROM outbox o
                WHERE o.event_id > max(
                    coalesce((SELECT max(event_id) FROM deliveries WHERE channel = ?1), 0),
                    coalesce((SELECT max(id) FROM events WHERE at < ?3), 0))
                """, [channel, now.stored, oldest.stored])
            return keeper.changes
        }
    }

    func dueDeliveries(channel: String, now: Timestamp, limit: Int) throws -> [PendingDelivery] {
        try ensureOpen()
        return try keeper.cachedStatement(
            """
            SELECT e.id, e.at, e.seller_id, e.kind, e.detail, e.request_id, e.app, o.payload, d.attempts,
                a.refresh_token_valid_time, o.uid, d.taken_at
            FROM deliveries d
            JOIN events e ON e.id = d.event_id
            JOIN outbox o ON o.event_id = d.event_id
            LEFT JOIN accounts a ON a.app = e.app AND a.seller_id = e.seller_id
            WHERE d.channel = ? AND d.delivered_at IS NULL AND d.abandoned_at IS NULL AND d.next_attempt_at <= ?
            ORDER BY d.next_attempt_at, d.event_id LIMIT ?
            """
        ).rows([channel, now.stored, max(1, limit)]) { row in
            PendingDelivery(
                event: Self.decodeEvent(row), uid: row.string(10), payload: row.optionalString(7),
                attempts: row.int(8), reauthBy: AccountRow.timestamp(row, 9),
                takenAt: Timestamp(millisecondsSince1970: row.int64(11)))
        }
    }

    func latestOutboxEventID() throws -> Int64 {
        try ensureOpen()
        return try keeper.cachedStatement("SELECT coalesce(max(event_id), 0) FROM outbox").firstRow { $0.int64(0) } ?? 0
    }

    func outboxUID(eventID: Int64) throws -> String? {
        try ensureOpen()
        return try keeper.cachedStatement("SELECT uid FROM outbox WHERE event_id = ?").firstRow([eventID]) {
            $0.string(0)
        }
    }

    /// The earliest moment a pending delivery of `channel` is due, if any.
    func nextDeliveryAttempt(channel: String) throws -> Timestamp? {
        try ensureOpen()
        return try keeper.cachedStatement(
            """
            SELECT min(next_attempt_at) FROM deliveries
            WHERE channel = ? AND delivered_at IS NULL AND abandoned_at IS NULL
            """
        ).firstRow([channel]) { AccountRow.timestamp($0, 0) } ?? nil
    }

    /// Keeps the first rendering of an event's payload; returns the one stored.
    func storePayload(eventID: Int64, payload: String) throws -> String {
        try write { _ in
            try keeper.execute(
                "UPDATE outbox SET payload = ? WHERE event_id = ? AND payload IS NULL", [payload, eventID])
            let stored = try keeper.cachedStatement("SELECT payload FROM outbox WHERE event_id = ?")
                .firstRow([eventID]) { $0.optionalString(0) }
            return (stored ?? nil) ?? payload
        }
    }

    func recordDelivery(eventID: Int64, channel: String, result: DeliveryResult, now: Timestamp) throws {
        try write { _ in
            switch result {
            case .delivered:
                try keeper.execute(
                    """
                    UPDATE deliveries SET attempts = attempts + 1, delivered_at = ?, last_error = NULL
                    WHERE event_id = ? AND channel = ?
                    """, [now.stored, eventID, channel])
            case .failed(let error, let retryAt):
                try keeper.execute(
                    """
                    UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
                    WHERE event_id = ? AND channel = ?
                    """, [retryAt.stored, error, eventID, channel])
            case .abandoned(let error):
                try keeper.execute(
                    """
                    UPDATE deliveries SET attempts = attempts + 1, abandoned_at = ?, last_error = ?
                    WHERE event_id = ? AND channel = ?
                    """, [now.stored, error, eventID, channel])
            }
        }
    }

    func deliveryCounts() throws -> [String: DeliveryCounts] {
        try ensureOpen()
        let rows = try keeper.cachedStatement(
            """
            SELECT channel, sum(delivered_at IS NULL AND abandoned_at IS NULL), sum(abandoned_at IS NOT NULL),
                sum(delivered_at IS NOT NULL)
            FROM deliveries GROUP BY channel
            """
        ).rows { row in
            (row.string(0), DeliveryCounts(pending: row.int(1), abandoned: row.int(2), delivered: row.int(3)))
        }
        return Dictionary(rows, uniquingKeysWith: { first, _ in first })
    }

    // MARK: - Keys and states

    /// The named key, created from `make()` on first use. Safe against a
    /// second process creating it at the same moment: the first one stored wins.
    func key(named name: String, make: () -> String, now: Timestamp) throws -> String {
        let select = "SELECT value FROM keys WHERE name = ?"
        if let existing = try keeper.cachedStatement(select).firstRow([name], { $0.string(0) }) {
            return existing
        }
        return try write { _ in
            try keeper.execute(
                "INSERT OR IGNORE INTO keys (name, value, created_at) VALUES (?, ?, ?)", [name, make(), now.stored])
            guard let stored = try keeper.cachedStatement(select).firstRow([name], { $0.string(0) }) else {
                throw SQLiteStoreError.fileProblem(path: keeperPath, problem: "the key \(name) was not stored")
            }
            return stored
        }
    }

    /// Records a state's nonce as used; false if it already is. A released
    /// state may be used again. Forgets nonces whose states have expired
    /// (they are refused as expired).
    func consumeState(nonce: String, expiresAt: Timestamp, now: Timestamp) throws -> Bool {
        try write { _ in
            try keeper.execute("DELETE FROM used_states WHERE expires_at < ?", [now.stored])
            try keeper.execute(
                """
                INSERT INTO used_states (nonce, used_at, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (nonce) DO UPDATE SET in_use = 1, used_at = excluded.used_at WHERE in_use = 0
                """,
                [nonce, now.stored, expiresAt.stored])
            return keeper.changes == 1
        }
    }

    /// Makes a consumed state usable again (its code could not be exchanged
    /// through no fault of the seller's), unless it was released
    /// `maxReleases` times already: it then stays spent. True when released.
    func releaseState(nonce: String, maxReleases: Int) throws -> Bool {
        try write { _ in
            try keeper.execute(
                "UPDATE used_states SET in_use = 0, releases = releases + 1 WHERE nonce = ? AND in_use = 1 AND releases < ?",
                [nonce, maxReleases])
            return keeper.changes == 1
        }
    }

    // MARK: - Reading for people and metrics

    static let eventColumns = "e.id, e.at, e.seller_id, e.kind, e.detail, e.request_id, e.app"

    static func decodeEvent(_ row: SQLiteRow) -> StoredEvent {
        StoredEvent(
            id: row.int64(0), at: Timestamp(millisecondsSince1970: row.int64(1)),
            app: row.optionalString(6).flatMap(AppName.init(rawValue:)), sellerID: row.optionalString(2),
            kind: EventKind(rawValue: row.string(3)), detail: row.optionalString(4), requestID: row.optionalString(5))
    }

    /// Events matching `query`, newest first.
    func events(_ query: EventQuery) throws -> [StoredEvent] {
        try ensureOpen()
        var conditions: [String] = []
        var values: [(any SQLiteBindable)?] = []
        if let app = query.app {
            conditions.append("e.app = ?")
            values.append(app.rawValue)
        }
        if let sellerID = query.sellerID {
            conditions.append("e.seller_id = ?")
            values.append(sellerID)
        }
        if let since = query.since {
            conditions.append("e.at >= ?")
            values.append(since.stored)
        }
        if let kind = query.kind {
            conditions.append("e.kind = ?")
            values.append(kind.rawValue)
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        values.append(max(0, query.limit))
        return try keeper.cachedStatement(
            "SELECT \(Self.eventColumns) FROM events e \(filter) ORDER BY e.id DESC LIMIT ?"
        ).rows(values, Self.decodeEvent)
    }

    func fleetFigures(reauthHorizon: Timestamp) throws -> FleetFigures {
        try ensureOpen()
        var figures = FleetFigures(byStatus: AccountStatus.total(of: try statusCounts()))
        figures.reauthDue =
            try keeper.cachedStatement(
                "SELECT count(*) FROM accounts WHERE status = 'active' AND refresh_token_valid_time <= ?"
            ).firstRow([reauthHorizon.stored]) { $0.int(0) } ?? 0
        try keeper.cachedStatement(
            "SELECT min(next_refresh_at), min(expire_time) FROM accounts WHERE status = 'active'"
        ).firstRow { row in
            figures.nextRefreshAt = AccountRow.timestamp(row, 0)
            figures.earliestAccessExpiry = AccountRow.timestamp(row, 1)
        }
        return figures
    }

    /// Accounts, in the given order, that match a condition (for `status`).
    func accounts(where condition: String, _ values: [(any SQLiteBindable)?], orderBy: String, limit: Int) throws
        -> [Account]
    {
        try ensureOpen()
        return try keeper.cachedStatement(
            "SELECT \(AccountRow.columns) FROM accounts WHERE \(condition) ORDER BY \(orderBy) LIMIT ?"
        ).rows(values + [max(0, limit)], AccountRow.decode)
    }
}
