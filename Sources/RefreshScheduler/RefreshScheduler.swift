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
/// configuration failure holds everyone back and probes with one account at a
/// time. ``RefreshPolicy`` decides the times.
///
/// The scheduler knows only the protocols of `TokenKeeperCore`
/// (``AccountStore``, ``TokenGateway``, ``WallClock``), so it is tested with
/// fakes and a manual clock.
public actor RefreshScheduler {
    let store: any AccountStore
    let gateway: any TokenGateway
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
    /// How long before its deadline an account may start, so that the
    /// accounts falling due together fit `refresh.max_calls_per_second`
    /// (``DeadlineQueue/requiredLead(callsPerSecond:)``); zero when they fit.
    var lead: Duration = .zero
    /// The schedule changed in a way the lead has not seen (a load, changes
    /// picked up, a new rate).
    var leadIsStale = false
    var lastLeadPlan: Timestamp?
    var leadReportedAt: Timestamp?
    /// Accounts asked for by ``refreshNow(_:)``: refreshed even if the store
    /// says they are not due yet.
    var forced: Set<String> = []
    /// Accounts with an attempt under way; never two at once for one account.
    var inFlight: Set<String> = []
    var bucket: TokenBucket?

    // What holds calls back.
    var pausedUntil: Timestamp?
    var configurationFailure: GatewayFailure?
    var probeInFlight = false
    var nextProbeAt = Timestamp(millisecondsSince1970: 0)
    /// Sellers whose rotated pair is only in memory, with the store's error.
    /// While any exists no new call starts: each would rotate another token
    /// that cannot be stored.
    var undurable: [String: String] = [:]
    var storeFailureStreak = 0
    /// Rotated pairs the store refused for their sellers' own values, kept
    /// here (the leases kept too) and tried again on each seller's backoff,
    /// outside the concurrency slots.
    var refusedPairs: [String: RefusedPair] = [:]
    /// Writes in a row that met another process's lock.
    var contentionStreak = 0
    /// Sellers waiting to retry after the store failed them, with how many
    /// times in a row: each backs off by its own count, and all are tried
    /// again at once when a write works.
    var parkedByStore: [String: Int] = [:]
    /// The access token's expiry of each seller due within
    /// ``expiryWatchWindow`` of it (short-lived tokens, sellers due late):
    /// a store retry is never planned past it. Empty for a fleet of
    /// day-long tokens refreshed on time.
    var nearExpiry: [String: Timestamp] = [:]
    var clockSkewReported = false
    /// Sellers whose odd lifetimes were reported (once each).
    var anomaliesReported: Set<String> = []

    // Mass rejections.
    var breaker: MassRejectionBreaker
    /// Sellers whose rejection the breaker holds: active, not on the heap,
    /// released at once when the gateway accepts a refresh token again.
    var heldByBreaker: [String: GatewayFailure] = [:]
    /// The held seller now scheduled to try again: its answer tells whether
    /// the rejections are over.
    var breakerProbe: String?

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
        var remaining: Set<String>
        var results: [String: RefreshOutcome] = [:]
        var continuation: CheckedContinuation<[String: RefreshOutcome], Never>
    }
    var batches: [Int: Batch] = [:]
    var batchesBySeller: [String: [Int]] = [:]
    var nextBatchID = 0

    var refreshedCount = 0
    var failedCount = 0
    var reauthRequiredCount = 0

    /// One attempt on one account.
    struct Job: Sendable {
        var sellerID: String
        /// From ``refreshNow(_:)``: skip the "not due yet" check.
        var forced: Bool
        /// Started while the configuration was rejected: its answer decides
        /// whether the trouble is over.
        var isProbe: Bool
        /// The deadline it was started for (nil when forced): it may start
        /// before it by the lead, and is not then "not due yet".
        var planned: Timestamp?
    }

    /// Creates a scheduler; nothing happens until ``run()`` or ``refreshNow(_:)``.
    ///
    /// - Parameters:
    ///   - store: Where accounts, leases and outcomes are kept (`keeper.db`).
    ///   - gateway: The IOP gateway client.
    ///   - clock: The wall clock all deadlines are read against.
    ///   - monotonic: Tells a step of the wall clock from time passing; by
    ///     default the system's (or `clock` itself, where it is also a
    ///     ``TokenKeeperCore/MonotonicClock``, as test clocks are).
    ///   - configuration: Limits, intervals and the refresh policy.
    ///   - timer: The one wake-up timer; by default a ``DispatchWakeupTimer``.
    ///   - random: The source of jitter.
    ///   - logger: One line per event; never a token.
    ///   - onEvent: Called on the scheduler's executor for every ``SchedulerEvent``;
    ///     must return quickly.
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
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.monotonic = monotonic ?? (clock as? any MonotonicClock) ?? SystemMonotonicClock()
        self.configuration = configuration
        self.breaker = MassRejectionBreaker(policy: configuration.massRejection)
        self.timer = timer
        self.random = random
        self.logger = logger
        self.onEvent = onEvent
        bucket = configuration.maxCallsPerSecond.map { TokenBucket(ratePerSecond: $0) }
        timer.setHandler(Self.wakeHandler(for: self))
    }

    /// The timer's handler, made outside the actor's isolation: a closure
    /// formed inside an actor method would be isolated to it, and Dispatch
    /// calling it from its own queue crashes at run time.
    nonisolated private static func wakeHandler(for scheduler: RefreshScheduler) -> @Sendable () async -> Void {
        { [weak scheduler] in await scheduler?.wake() }
    }

    // MARK: - Public API

    /// Refreshes these sellers as soon as the limits allow, whether due or
    /// not, and returns each one's outcome when its attempt ends.
    ///
    /// Works in a running daemon (the accounts jump the queue; throttling,
    /// configuration trouble and the rate limit still apply) and without
    /// ``run()`` as a one-shot for the command line (nothing is rescheduled;
    /// every outcome is returned). A seller whose attempt is already in flight
    /// gets that attempt's outcome.
    public func refreshNow(_ sellerIDs: [String]) async -> [String: RefreshOutcome] {
        var seen = Set<String>()
        let ids = sellerIDs.filter { seen.insert($0).inserted }
        guard !ids.isEmpty else { return [:] }
        guard phase == .idle || phase == .running else {
            return Dictionary(uniqueKeysWithValues: ids.map { ($0, RefreshOutcome.notAttempted) })
        }
        return await withCheckedContinuation { continuation in
            let batchID = nextBatchID
            nextBatchID += 1
            batches[batchID] = Batch(remaining: Set(ids), continuation: continuation)
            let now = clock.now()
            for sellerID in ids {
                batchesBySeller[sellerID, default: []].append(batchID)
                guard !inFlight.contains(sellerID) else { continue }
                forced.insert(sellerID)
                queue.schedule(sellerID, at: min(queue.due(of: sellerID) ?? now, now))
            }
            pump()
        }
    }

    /// Retries what is held back at once: the next configuration probe (after
    /// SIGHUP re-read the configuration and the secret) and pending store
    /// writes. Refreshing resumes fully as soon as a call succeeds.
    /// Applies new settings (SIGHUP): policy, concurrency, call rate, tick,
    /// probe and retry intervals take effect from the next decision. The
    /// lease owner and the lease duration stay: leases already taken keep
    /// their meaning. Deadlines already scheduled stay until their next refresh.
    public func update(configuration newConfiguration: RefreshSchedulerConfiguration) {
        var applied = newConfiguration
        applied.leaseOwner = configuration.leaseOwner
        // A longer request timeout needs a longer lease at once; a shorter one
        // keeps the longer lease, since calls under way may still take it all.
        applied.leaseDuration = max(configuration.leaseDuration, newConfiguration.leaseDuration)
        if applied.massRejection != configuration.massRejection {
            breaker = MassRejectionBreaker(policy: applied.massRejection)
        }
        if applied.maxCallsPerSecond != configuration.maxCallsPerSecond {
            bucket = applied.maxCallsPerSecond.map { TokenBucket(ratePerSecond: $0) }
            leadIsStale = true
        }
        if applied.tickInterval < configuration.tickInterval, let nextTickAt {
            self.nextTickAt = min(nextTickAt, clock.now() + applied.tickInterval)
        }
        configuration = applied
        planLead()
        logger.notice(
            "refresh settings applied",
            metadata: [
                "concurrency": "\(applied.concurrency)",
                "max_calls_per_second": "\(applied.maxCallsPerSecond.map { "\($0)" } ?? "unlimited")",
            ])
        pump()
    }

    public func retryHeldBack() {
        let now = clock.now()
        if configurationFailure != nil, !probeInFlight {
            nextProbeAt = now
            logger.notice("retrying the accounts held back by the configuration failure now")
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
    /// starting calls: sellers not yet started are answered
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
            answerBatches(for: batchesBySeller.keys.filter { !inFlight.contains($0) }, with: .notAttempted)
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
        var degraded: [DegradedReason] = []
        if let configurationFailure { degraded.append(.configuration(configurationFailure)) }
        if let message = undurable.values.first { degraded.append(.storage(message: message)) }
        if breaker.isTripped, let failure = heldByBreaker.values.first {
            degraded.append(.massRejection(code: failure.code, held: heldByBreaker.count))
        }
        let now = clock.now()
        return SchedulerSnapshot(
            scheduled: queue.count, inFlight: inFlight.count, nextDue: queue.peek()?.due, degraded: degraded,
            pausedUntil: pausedUntil.flatMap { $0 > now ? $0 : nil }, refreshed: refreshedCount,
            failed: failedCount, reauthRequired: reauthRequiredCount,
            isStopping: phase == .stopping || phase == .stopped, pairsRefused: refusedPairs.count,
            storeUnanswered: storeUnanswered.flatMap { $0 >= configuration.tickInterval * 3 ? $0 : nil })
    }

    /// The deadline of one seller, if it is scheduled (for tests and `status`).
    public func deadline(of sellerID: String) -> Timestamp? {
        queue.due(of: sellerID)
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
