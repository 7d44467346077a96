public import TokenKeeperCore

/// What the scheduler reports to the service (sd_notify, notifications,
/// `STATUS=` lines). Delivered synchronously, in order, from the scheduler's
/// executor: an observer must return quickly.
public enum SchedulerEvent: Sendable, Equatable {
    /// The schedule is loaded and the timer armed (systemd `READY=1`).
    case ready(SchedulerSnapshot)
    /// An attempt on a scheduled account started, `delay` after its
    /// deadline (zero when it started on time or early). Not sent for
    /// accounts forced by ``RefreshScheduler/refreshNow(_:)``.
    case started(sellerID: String, delay: Duration)
    /// A rotated pair is durable; see ``RefreshOutcome/refreshed(requestID:nextDue:isFinalGrant:)``.
    case refreshed(sellerID: String, requestID: String?, nextDue: Timestamp, isFinalGrant: Bool)
    /// A transient or throttling failure; the account is tried again at `nextDue`.
    case failed(sellerID: String, failure: GatewayFailure, nextDue: Timestamp)
    /// The account is now `reauth_required`; the gateway gets no more calls for it.
    case reauthRequired(sellerID: String, reason: String, requestID: String?)
    /// Refreshing is held back (configuration rejected, or the store cannot
    /// make a rotated pair durable). Reported once per episode.
    case degraded(DegradedReason)
    /// The trouble reported by ``degraded(_:)`` is over.
    case recovered(DegradedReason)
    /// The scheduler's own loop is alive (the watchdog's heartbeat), every
    /// ``RefreshSchedulerConfiguration/tickInterval``.
    case tick(SchedulerSnapshot)
    /// `run()` is returning.
    case stopped(SchedulerSnapshot)
    /// A rotated pair the store did not take: the scheduler stopped while it
    /// could still not be stored, or the stored refresh token was replaced
    /// during the call (the fence was lost). The grant is handed over so that
    /// it can be kept elsewhere (a file `import` reads): the gateway issued
    /// it, and nothing else holds it.
    /// `replacing` is the refresh token the grant replaces (the one sent).
    case rotationUnstored(sellerID: String, grant: TokenGrant, replacing: Secret)
}

/// Why refreshing is held back.
public enum DegradedReason: Sendable, Equatable {
    /// The gateway rejects our configuration (bad signature, app key, clock).
    case configuration(GatewayFailure)
    /// A rotated pair could not be written; no new calls until it is.
    case storage(message: String)
    /// The gateway rejected the refresh tokens of many sellers at once: no
    /// seller is marked while the hold lasts; one probe per interval tells
    /// whether it was a glitch.
    case massRejection(code: String, held: Int)
}

/// The scheduler's state at a glance, for `STATUS=` lines and `status`.
public struct SchedulerSnapshot: Sendable, Equatable {
    /// Accounts with a deadline in the heap.
    public var scheduled: Int
    /// Refreshes in flight.
    public var inFlight: Int
    /// The earliest deadline.
    public var nextDue: Timestamp?
    /// What holds refreshing back, if anything.
    public var degraded: [DegradedReason]
    /// Throttled by the gateway: no calls before this.
    public var pausedUntil: Timestamp?
    /// Since start: rotations committed, failed attempts, accounts marked
    /// `reauth_required`.
    public var refreshed: Int
    public var failed: Int
    public var reauthRequired: Int
    /// True once a stop was requested.
    public var isStopping: Bool
    /// How long the store has left the scheduler's read unanswered, once that
    /// is over three ticks (a disk or database that hangs); nil otherwise.
    public var storeUnanswered: Duration?
    /// Rotated pairs the store refused for their sellers' own values, held in
    /// memory and retried.
    public var pairsRefused: Int

    public init(
        scheduled: Int = 0, inFlight: Int = 0, nextDue: Timestamp? = nil, degraded: [DegradedReason] = [],
        pausedUntil: Timestamp? = nil, refreshed: Int = 0, failed: Int = 0, reauthRequired: Int = 0,
        isStopping: Bool = false, pairsRefused: Int = 0, storeUnanswered: Duration? = nil
    ) {
        self.pairsRefused = pairsRefused
        self.storeUnanswered = storeUnanswered
        self.scheduled = scheduled
        self.inFlight = inFlight
        self.nextDue = nextDue
        self.degraded = degraded
        self.pausedUntil = pausedUntil
        self.refreshed = refreshed
        self.failed = failed
        self.reauthRequired = reauthRequired
        self.isStopping = isStopping
    }
}
