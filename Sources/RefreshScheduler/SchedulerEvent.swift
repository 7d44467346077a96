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
    case started(account: AccountKey, delay: Duration)
    /// A rotated pair is durable; see ``RefreshOutcome/refreshed(requestID:nextDue:isFinalGrant:)``.
    case refreshed(account: AccountKey, requestID: String?, nextDue: Timestamp, isFinalGrant: Bool)
    /// A transient or throttling failure; the account is tried again at `nextDue`.
    case failed(account: AccountKey, failure: GatewayFailure, nextDue: Timestamp)
    /// The account is now `reauth_required`; the gateway gets no more calls for it.
    case reauthRequired(account: AccountKey, reason: String, requestID: String?)
    /// Refreshing is held back (an app's configuration rejected, or the store
    /// cannot make a rotated pair durable). Reported once per episode (per
    /// app, for an app's trouble).
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
    case rotationUnstored(account: AccountKey, grant: TokenGrant, replacing: Secret)
}

/// Why refreshing is held back, and for whom.
public enum DegradedReason: Sendable, Equatable {
    /// The gateway rejects the configuration of `app` (bad signature, app
    /// key, clock), or no gateway is configured for it (code
    /// ``RefreshScheduler/appNotConfiguredCode``): that app's sellers are
    /// held back; other apps go on.
    case configuration(app: AppName, GatewayFailure)
    /// A rotated pair could not be written; no new calls until it is, for
    /// any app (there is one store).
    case storage(message: String)
    /// The gateway rejected the refresh tokens of many sellers of `app` at
    /// once: none of them is marked while the hold lasts; one probe per
    /// interval tells whether it was a glitch. Other apps go on.
    case massRejection(app: AppName, code: String, held: Int)
    /// The sellers of `app` need more calls a second than its
    /// `max_calls_per_second` allows (`allowed`) to start on time: `needed`,
    /// the most calls a second any stretch of the schedule from now asks
    /// for. Nothing is held back: the earliest start early, and meanwhile
    /// each refresh is planned at the latest the policy allows
    /// (``TokenKeeperCore/RefreshPolicy/latestRefresh(after:planned:)``), which asks
    /// fewer calls. Told at start and whenever it begins, so that the
    /// operator raises the rate (the gateway's quota allowing).
    case callRate(app: AppName, needed: Double, allowed: Double)

    /// The app it concerns; nil for the store's trouble, which holds every app.
    public var app: AppName? {
        switch self {
        case .configuration(let app, _), .massRejection(let app, _, _), .callRate(let app, _, _): app
        case .storage: nil
        }
    }
}

/// The scheduler's state at a glance, for `STATUS=` lines and `status`.
public struct SchedulerSnapshot: Sendable, Equatable {
    /// Accounts with a deadline in the heap.
    public var scheduled: Int
    /// Refresh calls at the gateway now (at most `refresh.concurrency`).
    public var inFlight: Int
    /// The earliest deadline.
    public var nextDue: Timestamp?
    /// What holds refreshing back, if anything.
    public var degraded: [DegradedReason]
    /// The apps the gateway throttles now, each with the end of its pause:
    /// none of that app's calls before it; other apps' calls go on.
    public var pausedApps: [AppName: Timestamp]
    /// The earliest end of a throttling pause in force, if any app is throttled.
    public var pausedUntil: Timestamp? { pausedApps.values.min() }
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
        pausedApps: [AppName: Timestamp] = [:], refreshed: Int = 0, failed: Int = 0, reauthRequired: Int = 0,
        isStopping: Bool = false, pairsRefused: Int = 0, storeUnanswered: Duration? = nil
    ) {
        self.pairsRefused = pairsRefused
        self.storeUnanswered = storeUnanswered
        self.scheduled = scheduled
        self.inFlight = inFlight
        self.nextDue = nextDue
        self.degraded = degraded
        self.pausedApps = pausedApps
        self.refreshed = refreshed
        self.failed = failed
        self.reauthRequired = reauthRequired
        self.isStopping = isStopping
    }
}
