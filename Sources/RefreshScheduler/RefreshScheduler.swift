public import Logging
public import TokenKeeperCore

/// The daemon's heart: keeps every active seller's access token fresh.
///
/// All deadlines live in one min-heap; one ``WakeupTimer`` is armed to the
/// earliest thing to do (a deadline, the next call the rate limit allows, the
/// end of a throttling pause, the next tick). With nothing due the scheduler
/// uses no CPU beyond one tick per ``RefreshSchedulerConfiguration/tickInterval``,
/// which picks up changes made by other processes and feeds the watchdog.
///
/// A due account is refreshed under a lease in the store (so one refresh token
/// is sent at most once, across processes), with bounded concurrency and call
/// rate. The outcome decides what happens next: a rotated pair is made durable
/// before anything else; a rejected refresh token marks only that seller
/// `reauth_required`; transient failures retry forever with backoff; a
/// configuration failure holds back the app's sellers and probes with one
/// account of that app at a time. ``RefreshPolicy`` decides the times.
///
/// Accounts of several apps share the heap, the timer, the store and the
/// concurrency slots; each app has its own gateway, call rate, throttling
/// pause, configuration trouble and mass-rejection breaker (an ``AppLane``),
/// so one app's trouble never holds back another's sellers.
///
/// The scheduler knows only the protocols of `TokenKeeperCore`
/// (``AccountStore``, ``TokenGateway``, ``WallClock``), so it is tested with
/// fakes and a manual clock.
public actor RefreshScheduler {
    let store: any AccountStore
    /// Each app's gateway client (its key and secret).
    var gateways: [AppName: any TokenGateway]
    let clock: any WallClock
    /// Measures how the wall clock moves: a step shows as a change of the
    /// wall clock's distance from this one.
    let monotonic: any MonotonicClock
    var configuration: RefreshSchedulerConfiguration
    let timer: any WakeupTimer
    let logger: Logger
    let onEvent: @Sendable (SchedulerEvent) -> Void
    var random: any RandomNumberGenerator

    // What to do and when.
    var queue = DeadlineQueue()
    /// How long before its deadline an account of each app may start, so
    /// that the app's accounts falling due together fit its call rate
    /// (``DeadlineQueue/requiredLeads(callsPerSecond:)``); apps whose calls
    /// fit are absent.
    var leads: [AppName: Duration] = [:]
    /// The longest of ``leads``: how far ahead the heap is looked at.
    var lead: Duration = .zero
    /// The schedule changed in a way the lead has not seen (a load, changes
    /// picked up, a new rate).
    var leadIsStale = false
    var lastLeadPlan: Timestamp?
    /// ``DeadlineQueue/revision`` when the lead was last planned.
    var leadPlanRevision: UInt64?
    var leadReportedAt: Timestamp?
    /// The apps whose sellers need more calls a second than they may make,
    /// with the most they were seen to need (``DegradedReason/callRate(app:needed:allowed:)``).
    var callRateShort: [AppName: Double] = [:]
    /// Accounts asked for by ``refreshNow(_:)``: refreshed even if the store
    /// says they are not due yet.
    var forced: Set<AccountKey> = []
    /// Accounts with an attempt under way; never two at once for one account.
    var inFlight: Set<AccountKey> = []
    /// Calls at the gateway now: at most `refresh.concurrency`.
    var callsInFlight = 0
    /// Attempts holding their lease, waiting for a call slot, in deadline order.
    var callWaiters: [CallWaiter] = []

    // What holds calls back.
    /// Each app's own pace and trouble (created when its first account comes up).
    var lanes: [AppName: AppLane] = [:]
    /// Each app's call budget, shared with the signing proxy's calls.
    public nonisolated let callBudgets: CallBudgets
    /// Sellers whose rotated pair is only in memory, with the store's error.
    /// While any exists no new call starts, for any app: each would rotate
    /// another token that cannot be stored.
    var undurable: [AccountKey: String] = [:]
    var storeFailureStreak = 0
    /// Rotated pairs the store refused for their sellers' own values, kept
    /// here (the leases kept too) and tried again on each seller's backoff,
    /// outside the concurrency slots.
    var refusedPairs: [AccountKey: RefusedPair] = [:]
    /// Writes in a row that met another process's lock.
    var contentionStreak = 0
    /// Sellers waiting to retry after the store failed them, with how many
    /// times in a row: each backs off by its own count, and all are tried
    /// again at once when a write works.
    var parkedByStore: [AccountKey: Int] = [:]
    /// The access token's expiry of each seller due within
    /// ``expiryWatchWindow`` of it (short-lived tokens, sellers due late):
    /// a store retry is never planned past it. Empty for a fleet of
    /// day-long tokens refreshed on time.
    var nearExpiry: [AccountKey: Timestamp] = [:]
    var clockSkewReported = false
    /// Sellers whose odd lifetimes were reported (once each).
    var anomaliesReported: Set<AccountKey> = []

    // Wall-clock steps.
    /// The wall clock's distance from the monotonic clock when last looked at.
    var wallOffset: Duration?
    /// A step whose shift of the stored deadlines is not yet done; no call
    /// starts until it is, since stored deadlines decide what is due.
    var pendingClockShift: Duration?
    var clockShiftInProgress = false

    // Lifecycle.
    enum Phase {
        /// Not started: ``refreshNow(_:)`` works one-shot (the CLI); nothing is rescheduled.
        case idle
        case running
        /// Stop requested: no new work; waiting for attempts in flight.
        case stopping
        case stopped
    }
    var phase = Phase.idle
    var nextTickAt: Timestamp?
    var tickInProgress = false
    /// When the tick's read of the store began, while it is unanswered
    /// (monotonic); and whether its hang was logged.
    var storeReadSince: Duration?
    var storeHangReported = false
    var cursor: ChangeCursor?
    var shutdownDeadline: Timestamp?
    var stopRequested = false
    var stopWaiter: CheckedContinuation<Void, Never>?
    var drainWaiter: CheckedContinuation<Void, Never>?
    var armedDeadline: Timestamp?

    // Waiting.
    struct Sleeper {
        var until: Timestamp
        var continuation: CheckedContinuation<Bool, Never>
    }
    /// Attempts waiting to retry a store write, woken by the one timer.
    var sleepers: [Sleeper] = []
    /// Attempts running (not parked in ``sleepers``).
    var runningTasks = 0
    var idleWaiters: [CheckedContinuation<Void, Never>] = []
    /// Attempts holding a rotated pair the store has not taken yet.
    var unstoredPairs = 0
    /// At a stop: resumed once no attempt holds an unstored pair.
    var unstoredPairsWaiter: CheckedContinuation<Void, Never>?

    struct Batch {
        var remaining: Set<AccountKey>
        var results: [AccountKey: RefreshOutcome] = [:]
        var continuation: CheckedContinuation<[AccountKey: RefreshOutcome], Never>
    }
    var batches: [Int: Batch] = [:]
    var batchesByAccount: [AccountKey: [Int]] = [:]
    var nextBatchID = 0

    var refreshedCount = 0
    var failedCount = 0
    var reauthRequiredCount = 0

    /// One attempt on one account.
    struct Job: Sendable {
        var account: AccountKey
        /// From ``refreshNow(_:)``: skip the "not due yet" check.
        var forced: Bool
        /// Started while its app's configuration was rejected: its answer
        /// decides whether the trouble is over.
        var isProbe: Bool
        /// The deadline it was started for (nil when forced): it may start
        /// before it by the lead, and is not then "not due yet".
        var planned: Timestamp?
    }

    /// Creates a scheduler; nothing happens until ``run()`` or ``refreshNow(_:)``.
    ///
    /// - Parameters:
    ///   - store: Where accounts, leases and outcomes are kept (`keeper.db`).
    ///   - gateways: Each app's IOP gateway client. An account of an app
    ///     without one is never called: its app is reported degraded
    ///     (``DegradedReason/configuration(app:_:)``) and its sellers wait,
    ///     unmarked, until ``update(gateways:)`` brings one.
    ///   - clock: The wall clock all deadlines are read against.
    ///   - monotonic: Tells a step of the wall clock from time passing; by
    ///     default the system's (or `clock` itself, where it is also a
    ///     ``TokenKeeperCore/MonotonicClock``, as test clocks are).
    ///   - configuration: Limits, intervals and the refresh policy.
    ///   - timer: The one wake-up timer; by default a ``DispatchWakeupTimer``.
    ///   - random: The source of jitter.
    ///   - callBudgets: Each app's call budget, shared with the signing
    ///     proxy's calls (``CallBudgets``); by default the scheduler's own.
    ///   - logger: One line per event; never a token.
    ///   - onEvent: Called on the scheduler's executor for every ``SchedulerEvent``;
    ///     must return quickly.
    public init(
        store: any AccountStore,
        gateways: [AppName: any TokenGateway],
        clock: any WallClock = SystemWallClock(),
        monotonic: (any MonotonicClock)? = nil,
        configuration: RefreshSchedulerConfiguration = RefreshSchedulerConfiguration(),
        timer: any WakeupTimer = DispatchWakeupTimer(),
        random: some RandomNumberGenerator & Sendable = SystemRandomNumberGenerator(),
        callBudgets: CallBudgets = CallBudgets(),
        logger: Logger = Logger(label: "tokenkeeper.scheduler"),
        onEvent: @escaping @Sendable (SchedulerEvent) -> Void = { _ in }
    ) {
        self.store = store
        self.callBudgets = callBudgets
        self.gateways = gateways
        self.clock = clock
        self.monotonic = monotonic ?? (clock as? any MonotonicClock) ?? SystemMonotonicClock()
        self.configuration = configuration
        self.timer = timer
        self.random = random
        self.logger = logger
        self.onEvent = onEvent
        timer.setHandler(Self.wakeHandler(for: self))
    }

    /// Creates a scheduler for the one app of a single-app configuration,
    /// ``TokenKeeperCore/AppName/default``; see
    /// ``init(store:gateways:clock:monotonic:configuration:timer:random:logger:onEvent:)``.
    public init(
        store: any AccountStore,
        gateway: any TokenGateway,
        clock: any WallClock = SystemWallClock(),
        monotonic: (any MonotonicClock)? = nil,
        configuration: RefreshSchedulerConfiguration = RefreshSchedulerConfiguration(),
        timer: any WakeupTimer = DispatchWakeupTimer(),
        random: some RandomNumberGenerator & Sendable = SystemRandomNumberGenerator(),
        logger: Logger = Logger(label: "tokenkeeper.scheduler"),
        onEvent: @escaping @Sendable (SchedulerEvent) -> Void = { _ in }
    ) {
        self.init(
            store: store, gateways: [.default: gateway], clock: clock, monotonic: monotonic,
            configuration: configuration, timer: timer, random: random, logger: logger, onEvent: onEvent)
    }

    /// The timer's handler, made outside the actor's isolation: a closure
    /// formed inside an actor method would be isolated to it, and Dispatch
    /// calling it from its own queue crashes at run time.
    nonisolated private static func wakeHandler(for scheduler: RefreshScheduler) -> @Sendable () async -> Void {
        { [weak scheduler] in await scheduler?.wake() }
    }

    /// The code of the configuration failure reported for an app that has
    /// accounts and no gateway (``DegradedReason/configuration(app:_:)``).
    public static let appNotConfiguredCode = "AppNotConfigured"

    static func appNotConfigured(_ app: AppName) -> GatewayFailure {
        GatewayFailure(
            .configuration, code: appNotConfiguredCode,
            message: "no gateway is configured for app \(app): its sellers are stored, the configuration has none")
    }

    // MARK: - Public API

    /// Refreshes these accounts as soon as the limits allow, whether due or
    /// not, and returns each one's outcome when its attempt ends.
    ///
    /// Works in a running daemon (the accounts jump the queue; their app's
    /// throttling, configuration trouble and call rate still apply) and
    /// without ``run()`` as a one-shot for the command line (nothing is
    /// rescheduled; every outcome is returned). An account whose attempt is
    /// already in flight gets that attempt's outcome; one whose app has no
    /// gateway is answered ``RefreshOutcome/configurationRejected(_:)`` at once.
    public func refreshNow(_ accounts: [AccountKey]) async -> [AccountKey: RefreshOutcome] {
        var seen = Set<AccountKey>()
        let keys = accounts.filter { seen.insert($0).inserted }
        guard !keys.isEmpty else { return [:] }
        guard phase == .idle || phase == .running else {
            return Dictionary(uniqueKeysWithValues: keys.map { ($0, RefreshOutcome.notAttempted) })
        }
        // An app without a gateway has nothing to call: answered now rather
        // than left waiting for a reload.
        var answered: [AccountKey: RefreshOutcome] = [:]
        for key in keys where gateways[key.app] == nil && !inFlight.contains(key) {
            noteMissingGateway(key.app)
            answered[key] = .configurationRejected(Self.appNotConfigured(key.app))
        }
        let waiting = keys.filter { answered[$0] == nil }
        guard !waiting.isEmpty else { return answered }
        let results = await withCheckedContinuation { continuation in
            let batchID = nextBatchID
            nextBatchID += 1
            batches[batchID] = Batch(remaining: Set(waiting), continuation: continuation)
            let now = clock.now()
            for key in waiting {
                batchesByAccount[key, default: []].append(batchID)
                guard !inFlight.contains(key) else { continue }
                forced.insert(key)
                queue.schedule(key, at: min(queue.due(of: key) ?? now, now))
            }
            pump()
        }
        return results.merging(answered) { first, _ in first }
    }

    /// Applies new settings (SIGHUP): policy, concurrency, call rates, tick,
    /// probe and retry intervals take effect from the next decision. The
    /// lease owner and the lease duration stay: leases already taken keep
    /// their meaning. Deadlines already scheduled stay until their next refresh.
    public func update(configuration newConfiguration: RefreshSchedulerConfiguration) {
        var applied = newConfiguration
        applied.leaseOwner = configuration.leaseOwner
        // A longer request timeout needs a longer lease at once; a shorter one
        // keeps the longer lease, since calls under way may still take it all.
        applied.leaseDuration = max(configuration.leaseDuration, newConfiguration.leaseDuration)
        let breakerChanged = applied.massRejection != configuration.massRejection
        for app in Array(lanes.keys) {
            if breakerChanged { lanes[app]!.breaker = MassRejectionBreaker(policy: applied.massRejection) }
            if lanes[app]!.callsPerSecond != applied.maxCallsPerSecond(for: app) {
                lanes[app]!.setCallsPerSecond(applied.maxCallsPerSecond(for: app))
                leadIsStale = true
            }
        }
        if applied.maxCallsPerSecond != configuration.maxCallsPerSecond
            || applied.maxCallsPerSecondByApp != configuration.maxCallsPerSecondByApp
        {
            leadIsStale = true
        }
        if applied.tickInterval < configuration.tickInterval, let nextTickAt {
            self.nextTickAt = min(nextTickAt, clock.now() + applied.tickInterval)
        }
        configuration = applied
        handOverCallSlots()
        planLead()
        var details: Logger.Metadata = [
            "concurrency": "\(applied.concurrency)",
            "max_calls_per_second": "\(applied.maxCallsPerSecond.map { "\($0)" } ?? "unlimited")",
        ]
        if !applied.maxCallsPerSecondByApp.isEmpty {
            details["apps_max_calls_per_second"] =
                "\(applied.maxCallsPerSecondByApp.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"
        }
        logger.notice("refresh settings applied", metadata: details)
        pump()
    }

    /// Replaces the apps' gateway clients (a reload that added, changed or
    /// removed apps, or re-read a secret). An app that had no gateway and
    /// now has one recovers and its sellers go on at once; an app whose
    /// configuration was rejected is probed again at once with its new
    /// client; an app whose gateway is gone is held back (its accounts are
    /// never called without one).
    public func update(gateways newGateways: [AppName: any TokenGateway]) {
        gateways = newGateways
        let now = clock.now()
        for app in lanes.keys.sorted() {
            if newGateways[app] == nil {
                noteMissingGateway(app)
                continue
            }
            if lanes[app]!.gatewayMissing {
                lanes[app]!.gatewayMissing = false
                if lanes[app]!.configurationFailure?.code == Self.appNotConfiguredCode {
                    recoverFromConfigurationFailure(of: app)
                    continue
                }
            }
            if lanes[app]!.configurationFailure != nil, !lanes[app]!.probeInFlight { lanes[app]!.nextProbeAt = now }
        }
        pump()
    }

    /// Retries what is held back at once: the next configuration probe of
    /// every app whose configuration is rejected (after SIGHUP re-read the
    /// configuration and the secrets) and pending store writes. Refreshing
    /// resumes fully as soon as a call succeeds.
    public func retryHeldBack() {
        let now = clock.now()
        for app in lanes.keys.sorted() {
            guard let lane = lanes[app], lane.configurationFailure != nil, !lane.gatewayMissing, !lane.probeInFlight
            else { continue }
            lanes[app]!.nextProbeAt = now
            logger.notice(
                "retrying the accounts held back by the app's configuration failure now", metadata: ["app": "\(app)"])
        }
        for index in sleepers.indices {
            sleepers[index].until = min(sleepers[index].until, now)
        }
        resumeSleepers(dueBy: now)
        pump()
    }

    /// Requests a graceful stop, as cancelling ``run()`` does: no new work;
    /// attempts in flight finish and commit (bounded by
    /// ``RefreshSchedulerConfiguration/shutdownGracePeriod``), then ``run()`` returns.
    ///
    /// Without ``run()`` (the CLI's one-shot ``refreshNow(_:)``), it stops
    /// starting calls: accounts not yet started are answered
    /// ``RefreshOutcome/notAttempted`` and calls in flight finish and commit.
    public func stop() {
        stopRequested = true
        stopWaiter?.resume()
        stopWaiter = nil
        if phase == .idle {
            // A one-shot run has no drain to wait through: it is stopped at once
            // for everything not yet sent.
            phase = .stopped
            queue = DeadlineQueue()
            dismissCallWaiters()
            answerBatches(for: batchesByAccount.keys.filter { !inFlight.contains($0) }, with: .notAttempted)
            // Store retries waiting make one last attempt now, and hand over
            // what still cannot be stored.
            let parked = sleepers
            sleepers.removeAll()
            for sleeper in parked {
                runningTasks += 1
                sleeper.continuation.resume(returning: false)
            }
        }
    }

    /// Counts and state for status lines.
    public func snapshot() -> SchedulerSnapshot {
        let apps = lanes.keys.sorted()
        var degraded: [DegradedReason] = []
        for app in apps {
            if let failure = lanes[app]!.configurationFailure { degraded.append(.configuration(app: app, failure)) }
        }
        if let message = undurable.values.first { degraded.append(.storage(message: message)) }
        for app in callRateShort.keys.sorted() {
            let allowed = configuration.maxCallsPerSecond(for: app) ?? 0
            degraded.append(.callRate(app: app, needed: callRateShort[app]!, allowed: allowed))
        }
        for app in apps {
            let lane = lanes[app]!
            if lane.breaker.isTripped, let failure = lane.heldByBreaker.values.first {
                degraded.append(.massRejection(app: app, code: failure.code, held: lane.heldByBreaker.count))
            }
        }
        let now = clock.now()
        let paused = lanes.compactMapValues { lane in lane.pausedUntil.flatMap { $0 > now ? $0 : nil } }
        return SchedulerSnapshot(
            scheduled: queue.count, inFlight: callsInFlight, nextDue: nextDue, degraded: degraded,
            pausedApps: paused, refreshed: refreshedCount, failed: failedCount,
            reauthRequired: reauthRequiredCount, isStopping: phase == .stopping || phase == .stopped,
            pairsRefused: refusedPairs.count,
            storeUnanswered: storeUnanswered.flatMap { $0 >= configuration.tickInterval * 3 ? $0 : nil })
    }

    /// The earliest deadline, on the heap or set aside for an app that
    /// cannot call yet.
    private var nextDue: Timestamp? {
        var earliest = queue.peek()?.due
        for app in queue.appsWithSetAside {
            guard let first = queue.firstSetAside(of: app)?.due else { continue }
            earliest = earliest.map { min($0, first) } ?? first
        }
        return earliest
    }

    /// The deadline of one account, if it is scheduled (for tests and `status`).
    public func deadline(of account: AccountKey) -> Timestamp? {
        queue.due(of: account)
    }

    /// Returns once no attempt is running (attempts parked until a store retry
    /// do not count), or when the calling task is cancelled. For tests and
    /// benchmarks driven by a manual clock.
    public func waitUntilIdle() async {
        guard runningTasks > 0, !Task.isCancelled else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { idleWaiters.append($0) }
        } onCancel: {
            Task { await self.releaseIdleWaiters() }
        }
    }

    private func releaseIdleWaiters() {
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// A lane for an app seen for the first time, at the app's rate; used as
    /// `lanes[app, default: newLane(for: app)]`, which changes a lane in place.
    func newLane(for app: AppName) -> AppLane {
        AppLane(
            app: app, budgets: callBudgets, callsPerSecond: configuration.maxCallsPerSecond(for: app),
            massRejection: configuration.massRejection)
    }

    func emit(_ event: SchedulerEvent) {
        onEvent(event)
    }
}

/// Misuse of a ``RefreshScheduler``.
public enum RefreshSchedulerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// ``RefreshScheduler/run()`` was called a second time.
    case alreadyStarted

    public var description: String {
        switch self {
        case .alreadyStarted: "the refresh scheduler runs once; create a new one to run again"
        }
    }
}

/// A rotated pair the store refused for its seller's own values.
struct RefusedPair {
    var grant: TokenGrant
    /// The refresh token the call sent: the commit's fence.
    var sent: Secret
    var nextDue: Timestamp
    var refusals = 0
}
