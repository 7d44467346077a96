public import TokenKeeperCore

/// The outbox, the callback's state bookkeeping, and what health, metrics,
/// `status`, `events` and `backup` read. See ``AccountVault`` for the SQL.
extension SQLiteAccountStore {
    /// Raises `reauth_due` for accounts entering the window that ends at
    /// `horizon` (once per entry); returns the sellers warned now.
    public func raiseReauthDue(horizon: Timestamp, now: Timestamp, limit: Int = 1000) throws -> [AccountKey] {
        try vault.raiseReauthDue(horizon: horizon, now: now, limit: limit)
    }

    /// Takes on the outbox events `channel` has not seen (for a new channel,
    /// those dated `oldest` or later); returns how many.
    @discardableResult
    public func enqueueDeliveries(channel: String, oldest: Timestamp, now: Timestamp) throws -> Int {
        try vault.enqueueDeliveries(channel: channel, oldest: oldest, now: now)
    }

    /// Deliveries of `channel` due at `now`, the earliest first.
    public func dueDeliveries(channel: String, now: Timestamp, limit: Int = 50) throws -> [PendingDelivery] {
        try vault.dueDeliveries(channel: channel, now: now, limit: limit)
    }

    /// When the next pending delivery of `channel` is due.
    public func nextDeliveryAttempt(channel: String) throws -> Timestamp? {
        try vault.nextDeliveryAttempt(channel: channel)
    }

    /// Stores an event's payload unless one is stored already; returns the stored one.
    public func storePayload(eventID: Int64, payload: String) throws -> String {
        try vault.storePayload(eventID: eventID, payload: payload)
    }

    public func recordDelivery(eventID: Int64, channel: String, result: DeliveryResult, now: Timestamp) throws {
        try vault.recordDelivery(eventID: eventID, channel: channel, result: result, now: now)
    }

    /// Pending, abandoned and delivered counts by channel.
    public func deliveryCounts() throws -> [String: DeliveryCounts] {
        try vault.deliveryCounts()
    }

    /// A key of tokenkeeper's own, kept in keeper.db (mode 0600), created by
    /// `make` on first use.
    public func key(named name: String, now: Timestamp, make: @Sendable () -> String) throws -> String {
        try vault.key(named: name, make: make, now: now)
    }

    /// Marks a state nonce used; false when it already was (a replay).
    public func consumeState(nonce: String, expiresAt: Timestamp, now: Timestamp) throws -> Bool {
        try vault.consumeState(nonce: nonce, expiresAt: expiresAt, now: now)
    }

    public func releaseState(nonce: String, maxReleases: Int) throws -> Bool {
        try vault.releaseState(nonce: nonce, maxReleases: maxReleases)
    }

    /// Events matching `query`, newest first.
    public func events(_ query: EventQuery) throws -> [StoredEvent] {
        try vault.events(query)
    }

    public func fleetFigures(reauthHorizon: Timestamp) throws -> FleetFigures {
        try vault.fleetFigures(reauthHorizon: reauthHorizon)
    }

    /// `reauth_required` accounts, the longest waiting first.
    public func accountsNeedingReauthorization(limit: Int) throws -> [Account] {
        try vault.accounts(where: "status = 'reauth_required'", [], orderBy: "updated_at", limit: limit)
    }

    /// Active accounts whose refresh token ends at or before `horizon`, the soonest first.
    public func accountsDueForReauthorization(horizon: Timestamp, limit: Int) throws -> [Account] {
        try vault.accounts(
            where: "status = 'active' AND refresh_token_valid_time <= ?", [horizon.stored],
            orderBy: "refresh_token_valid_time", limit: limit)
    }

    /// Active accounts by next deadline, the soonest first.
    public func nextRefreshes(limit: Int) throws -> [Account] {
        try vault.accounts(where: "status = 'active'", [], orderBy: "next_refresh_at", limit: limit)
    }

    /// An online copy of keeper.db at `destination` (created with mode 0600;
    /// refused if it exists), consistent as of one moment, taken through
    /// SQLite's backup API while refreshing goes on. Returns the result of
    /// `PRAGMA integrity_check` on the copy.
    public func backup(to destination: String) throws -> String {
        try vault.backup(to: destination)
    }
}

extension SQLiteAccountStore {
    /// The newest event id in the outbox (0 when empty): a cheap check for new events.
    public func latestOutboxEventID() throws -> Int64 {
        try vault.latestOutboxEventID()
    }

    /// An outbox event's uid (what receivers deduplicate by), if it is one.
    public func outboxUID(eventID: Int64) throws -> String? {
        try vault.outboxUID(eventID: eventID)
    }
}
