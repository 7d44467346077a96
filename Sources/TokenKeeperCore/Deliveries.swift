/// One event waiting to be delivered on one channel.
public struct PendingDelivery: Sendable, Equatable {
    public var event: StoredEvent
    /// The id receivers deduplicate by (random, unique for ever).
    public var uid: String
    /// The JSON rendered at the first attempt on any channel; nil before.
    public var payload: String?
    /// Attempts made on this channel so far.
    public var attempts: Int
    /// The seller's current re-authorization deadline
    /// (`refresh_token_valid_time`), if the seller is still stored.
    public var reauthBy: Timestamp?
    /// When the channel took the event on.
    public var takenAt: Timestamp

    /// Retries go on for the window from the event or, if the channel took it
    /// on later (the daemon was down, the channel was new), from then.
    public var retryWindowStart: Timestamp { max(event.at, takenAt) }

    public init(
        event: StoredEvent, uid: String, payload: String?, attempts: Int, reauthBy: Timestamp?, takenAt: Timestamp
    ) {
        self.takenAt = takenAt
        self.event = event
        self.uid = uid
        self.payload = payload
        self.attempts = attempts
        self.reauthBy = reauthBy
    }
}

/// How one delivery attempt ended.
public enum DeliveryResult: Sendable, Equatable {
    case delivered
    /// Tried again at `retryAt`.
    case failed(error: String, retryAt: Timestamp)
    /// Given up (past the retry window); kept for `status` and the metrics.
    case abandoned(error: String)
}

/// Deliveries of one channel by state.
public struct DeliveryCounts: Sendable, Equatable {
    public var pending: Int
    public var abandoned: Int
    public var delivered: Int

    public init(pending: Int = 0, abandoned: Int = 0, delivered: Int = 0) {
        self.pending = pending
        self.abandoned = abandoned
        self.delivered = delivered
    }
}

/// Figures for health and metrics, from the store.
public struct FleetFigures: Sendable, Equatable {
    public var byStatus: [AccountStatus: Int]
    /// Active accounts whose refresh token ends before the warning horizon.
    public var reauthDue: Int
    /// The earliest deadline among active accounts.
    public var nextRefreshAt: Timestamp?
    /// The earliest access-token expiry among active accounts.
    public var earliestAccessExpiry: Timestamp?

    public init(
        byStatus: [AccountStatus: Int] = [:], reauthDue: Int = 0, nextRefreshAt: Timestamp? = nil,
        earliestAccessExpiry: Timestamp? = nil
    ) {
        self.byStatus = byStatus
        self.reauthDue = reauthDue
        self.nextRefreshAt = nextRefreshAt
        self.earliestAccessExpiry = earliestAccessExpiry
    }
}
