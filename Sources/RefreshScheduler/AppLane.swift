import TokenKeeperCore

/// One app's own pace and trouble: whether an account of this app may call
/// the gateway now, whatever the other apps are going through.
///
/// Each app has its own key, secret and call budget at the gateway, so the
/// gateway throttles, rejects the configuration of, and rejects refresh
/// tokens en masse for one app at a time: one app's `ApiCallLimit` must not
/// pause another's refreshes, nor its wrong secret hold another's sellers.
/// What holds every app back (the one store failing, a clock step, the
/// concurrency slots) stays in the scheduler.
struct AppLane {
    let app: AppName
    /// Where this app's budget is kept, shared with the signing proxy.
    private let budgets: CallBudgets
    /// Spaces this app's calls (nil: no limit).
    private var budget: CallBudgets.Budget?
    /// The call rate this lane spaces its calls by.
    private(set) var callsPerSecond: Double?
    /// Throttled by the gateway: none of this app's calls before this.
    var pausedUntil: Timestamp?
    /// The gateway rejects this app's configuration (secret, key, signature,
    /// clock), or there is no gateway for it: its accounts wait, and one at a
    /// time probes whether the trouble is over.
    var configurationFailure: GatewayFailure?
    var probeInFlight = false
    var nextProbeAt = Timestamp(millisecondsSince1970: 0)
    /// No gateway is configured for this app (its sellers are stored, the
    /// configuration has no such app): nothing to call, nothing to probe with.
    var gatewayMissing = false
    /// Judges this app's mass rejections of refresh tokens.
    var breaker: MassRejectionBreaker
    /// This app's sellers whose rejection the breaker holds: active, not on
    /// the heap, released at once when the gateway accepts this app's
    /// refresh tokens again.
    var heldByBreaker: [AccountKey: GatewayFailure] = [:]
    /// The held seller now scheduled to try again: its answer tells whether
    /// the rejections are over.
    var breakerProbe: AccountKey?

    init(app: AppName, budgets: CallBudgets, callsPerSecond: Double?, massRejection: MassRejectionPolicy) {
        self.app = app
        self.budgets = budgets
        self.callsPerSecond = callsPerSecond
        budget = budgets.budget(for: app, rate: callsPerSecond)
        breaker = MassRejectionBreaker(policy: massRejection)
    }

    /// Replaces the budget when the rate changed (a reload).
    mutating func setCallsPerSecond(_ rate: Double?) {
        guard rate != callsPerSecond else { return }
        callsPerSecond = rate
        budget = budgets.budget(for: app, rate: rate)
    }

    /// Ends a throttling pause that is over; true when one ended now.
    mutating func endPause(at now: Timestamp) -> Bool {
        guard let pausedUntil, pausedUntil <= now else { return false }
        self.pausedUntil = nil
        return true
    }

    /// When this app may start its next call, by its own pause, probe and
    /// call budget: at or before `now` means now; nil means not until
    /// something else happens (a probe's answer, a gateway configured).
    mutating func nextCallAt(_ now: Timestamp) -> Timestamp? {
        if gatewayMissing { return nil }
        var moment = now
        if let pausedUntil, pausedUntil > now { moment = pausedUntil }
        if configurationFailure != nil {
            if probeInFlight { return nil }
            moment = max(moment, nextProbeAt)
        }
        if let available = budget?.nextAvailable(now) { moment = max(moment, available) }
        return moment
    }

    /// Spends one call of the budget; only after ``nextCallAt(_:)`` said now.
    mutating func takeCall(_ now: Timestamp) {
        budget?.take(now)
    }

    /// Starts the pause, or lengthens it; true when no pause was in force.
    mutating func pause(until end: Timestamp, now: Timestamp) -> Bool {
        if let pausedUntil, pausedUntil >= end { return false }
        let wasPaused = pausedUntil.map { $0 > now } ?? false
        pausedUntil = end
        return !wasPaused
    }

    /// Moves every moment by `offset` (the wall clock was stepped).
    mutating func shift(by offset: Duration) {
        pausedUntil = pausedUntil.map { $0 + offset }
        nextProbeAt = nextProbeAt + offset
        breaker.shift(by: offset)
    }
}
