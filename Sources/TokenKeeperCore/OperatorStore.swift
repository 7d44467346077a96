/// The store as the daemon's operator loop uses it, on every backend: the
/// accounts (``ManagedAccountStore``), the event outbox the notifier
/// delivers from, the callback's state bookkeeping, and the fleet's figures.
/// The daemon and the commands hold an `any OperatorStore`; one function
/// (`StoreFactory.open`) picks the backend.
public protocol OperatorStore: ManagedAccountStore, EventOutbox, CallbackStateStore, FleetReporting {}

/// The event log's outbox: events people act on (``EventKind/notified``) are
/// queued with the change that causes them, and each channel (exec hook,
/// webhook) takes them on, delivers and records each, with retries.
public protocol EventOutbox: Sendable {
    /// Appends an event (and queues it when its kind is notified). `detail`
    /// must not contain a token (a ``Secret`` interpolates as its fingerprint).
    /// `app` without `sellerID` is an event of the app as a whole (its
    /// configuration rejected, say).
    func appendEvent(
        _ kind: EventKind, app: AppName?, sellerID: String?, detail: String?, requestID: String?, at: Timestamp
    ) async throws

    /// Raises `reauth_due` for active sellers whose refresh token ends by
    /// `horizon`, once per refresh token; returns the sellers warned now.
    func raiseReauthDue(horizon: Timestamp, now: Timestamp, limit: Int) async throws -> [AccountKey]

    /// The newest event id in the outbox (0 when empty): a cheap check for new events.
    func latestOutboxEventID() async throws -> Int64

    /// Takes on, for `channel`, every outbox event it has not seen that is
    /// dated `oldest` or later (a new channel gets no stale events); returns
    /// how many.
    @discardableResult
    func enqueueDeliveries(channel: String, oldest: Timestamp, now: Timestamp) async throws -> Int

    /// Deliveries of `channel` due at `now`, the earliest first.
    func dueDeliveries(channel: String, now: Timestamp, limit: Int) async throws -> [PendingDelivery]

    /// When the next pending delivery of `channel` is due; nil when none is.
    func nextDeliveryAttempt(channel: String) async throws -> Timestamp?

    /// Keeps the first rendering of an event's payload (every channel sends
    /// the same bytes); returns the one stored.
    func storePayload(eventID: Int64, payload: String) async throws -> String

    /// Records how one delivery attempt ended.
    func recordDelivery(eventID: Int64, channel: String, result: DeliveryResult, now: Timestamp) async throws

    /// Pending, abandoned and delivered counts by channel.
    func deliveryCounts() async throws -> [String: DeliveryCounts]

    /// An outbox event's uid (what receivers deduplicate by), if it is one.
    func outboxUID(eventID: Int64) async throws -> String?
}

/// What the callback listener keeps in the store, so that any process (any
/// node) can check a link it did not sign: the state key, and the states
/// already used.
public protocol CallbackStateStore: Sendable {
    /// A key of tokenkeeper's own, created by `make` on first use; when two
    /// processes create it at once, the first one stored wins for both.
    func key(named name: String, now: Timestamp, make: @Sendable () -> String) async throws -> String

    /// Marks a state's nonce used; false when it already is (a replay, or
    /// another node's use right now). A released state may be used again.
    /// Nonces of expired states are forgotten (the states are refused as expired).
    func consumeState(nonce: String, expiresAt: Timestamp, now: Timestamp) async throws -> Bool

    /// Makes a consumed state usable again (its code could not be exchanged
    /// through no fault of the seller's), unless it was released
    /// `maxReleases` times already: it then stays spent, so that one link
    /// cannot make the daemon call the gateway without end. True when released.
    func releaseState(nonce: String, maxReleases: Int) async throws -> Bool

    /// Stores a new seller of `app`, or new tokens for one that needs
    /// re-authorization; leaves a seller tokenkeeper manages (active or
    /// disabled) untouched and returns nil for it.
    func enrollUnlessManaged(app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) async throws
        -> Account?
}

/// What health, metrics and `status` read, and the event log's upkeep.
public protocol FleetReporting: Sendable {
    /// Counts by status, sellers due to authorize again by `reauthHorizon`,
    /// the next deadline and the earliest access-token expiry.
    func fleetFigures(reauthHorizon: Timestamp) async throws -> FleetFigures

    /// How many sellers must authorize again (the daemon's status line,
    /// once a minute: cheap at a million sellers).
    func countReauthRequired() async throws -> Int

    /// `reauth_required` sellers, the longest waiting first.
    func accountsNeedingReauthorization(limit: Int) async throws -> [Account]

    /// Active sellers whose refresh token ends by `horizon`, the soonest first.
    func accountsDueForReauthorization(horizon: Timestamp, limit: Int) async throws -> [Account]

    /// Active sellers by next deadline, the soonest first.
    func nextRefreshes(limit: Int) async throws -> [Account]

    /// Deletes events older than `cutoff` (never one still to be delivered),
    /// `batchSize` at a time; returns how many.
    @discardableResult
    func pruneEvents(before cutoff: Timestamp, batchSize: Int) async throws -> Int
}

extension EventOutbox {
    /// Appends an event about one account (or about none: the daemon's own).
    public func appendEvent(
        _ kind: EventKind, account: AccountKey?, detail: String?, requestID: String?, at: Timestamp
    ) async throws {
        try await appendEvent(
            kind, app: account?.app, sellerID: account?.sellerID, detail: detail, requestID: requestID, at: at)
    }
}
