import RefreshScheduler
import Synchronization
import TokenKeeperCore

/// Turns scheduler events into systemd notifications: READY=1, WATCHDOG=1
/// from the scheduler's own tick, and a STATUS= line.
final class DaemonStatus: Sendable {
    private struct State {
        var reauthRequired = 0
        var degraded: String?
        var lastRecount = ContinuousClock.now
        var health = DaemonHealth()
        var hasBeenReady = false
        var readyWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
        var cancelledWaiters: Set<Int> = []
    }
    /// How often the count of sellers needing re-authorization is read again
    /// from the store (one indexed GROUP BY; the events keep it current between).
    static let recountInterval: Duration = .seconds(60)
    private let state = Mutex(State())
    let notifier: SystemdNotifier
    init(notifier: SystemdNotifier) {
        self.notifier = notifier
    }

    var reauthRequired: Int {
        get { state.withLock { $0.reauthRequired } }
        set { state.withLock { $0.reauthRequired = newValue } }
    }

    /// True once per ``recountInterval``.
    func recountIsDue() -> Bool {
        state.withLock { state in
            let now = ContinuousClock.now
            guard now - state.lastRecount >= Self.recountInterval else { return false }
            state.lastRecount = now
            return true
        }
    }

    /// Returns once the schedule is loaded (`READY=1`): work that can wait
    /// (the tokens.db check) does not compete with loading it.
    func waitUntilReady() async {
        let token = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.hasBeenReady || state.cancelledWaiters.remove(token) != nil { return true }
                    state.readyWaiters[token] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                guard let waiter = state.readyWaiters.removeValue(forKey: token) else {
                    state.cancelledWaiters.insert(token)
                    return nil as CheckedContinuation<Void, Never>?
                }
                return waiter
            }
            waiter?.resume()
        }
    }

    /// What `/readyz` and the metrics report.
    var health: DaemonHealth {
        state.withLock { $0.health }
    }

    /// Names the notification channels, for the metrics.
    func setChannels(_ channels: [String]) {
        state.withLock { $0.health.channels = channels }
    }

    func handle(_ event: SchedulerEvent) {
        switch event {
        case .ready(let snapshot):
            let waiters = state.withLock { state in
                state.health.isReady = true
                state.health.inFlight = snapshot.inFlight
                state.hasBeenReady = true
                defer { state.readyWaiters.removeAll() }
                return state.readyWaiters.values
            }
            notifier.ready(status: line(snapshot))
            for waiter in waiters { waiter.resume() }
        case .tick(let snapshot):
            state.withLock { $0.health.inFlight = snapshot.inFlight }
            notifier.watchdog()
            notifier.status(line(snapshot))
        case .reauthRequired:
            state.withLock { $0.reauthRequired += 1 }
        case .degraded(let reason):
            state.withLock {
                $0.degraded = Self.describe(reason)
                $0.health.degraded[DaemonHealth.key(of: reason)] = Self.describe(reason)
            }
        case .recovered(let reason):
            state.withLock {
                $0.degraded = nil
                $0.health.degraded[DaemonHealth.key(of: reason)] = nil
            }
        case .stopped(let snapshot):
            state.withLock { $0.health.isReady = false }
            notifier.status("stopped; " + line(snapshot))
        case .started, .refreshed, .failed, .rotationUnstored:
            break
        }
    }

    func line(_ snapshot: SchedulerSnapshot) -> String {
        let (reauth, lastDegraded) = state.withLock { ($0.reauthRequired, $0.degraded) }
        // The snapshot knows every reason in force; the last event only the latest.
        let degraded =
            snapshot.degraded.isEmpty ? lastDegraded : snapshot.degraded.map(Self.describe).joined(separator: "; ")
        var text =
            "\(snapshot.scheduled) sellers scheduled, \(reauth) need re-authorization, "
            + "next refresh \(snapshot.nextDue.map { "\($0)" } ?? "none"), \(snapshot.refreshed) refreshed"
        if let paused = snapshot.pausedUntil { text += ", throttled until \(paused)" }
        if snapshot.pairsRefused > 0 {
            text += ", \(snapshot.pairsRefused) rotated pairs refused by the store (see list: StoreRefused)"
        }
        if let waited = snapshot.storeUnanswered { text = "STORE NOT ANSWERING for \(waited.seconds) s; " + text }
        if let degraded { text = "DEGRADED: \(degraded); " + text }
        return text
    }

    /// "app NAME: " for an app of a several-app configuration; nothing for
    /// the single app (whose messages read as they always did).
    static func appPrefix(_ app: AppName) -> String {
        app == .default ? "" : "app \(app): "
    }

    /// A rate as a person reads it: one decimal below 100.
    static func rate(_ value: Double) -> String {
        guard value < 100 else { return String(Int(value.rounded(.up))) }
        let tenths = Int((value * 10).rounded(.up))
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func describe(_ reason: DegradedReason) -> String {
        switch reason {
        case .configuration(let app, let failure):
            Self.appPrefix(app)
                + "the gateway rejects our configuration (\(failure.code)): fix it, then systemctl reload tokenkeeper "
                + "(restart instead when the secret comes from LoadCredential=: systemd copies credentials only at start)"
        case .storage(let message):
            "storage failing: \(message)"
        case .massRejection(let app, let code, let held):
            Self.appPrefix(app)
                + "the gateway rejects many sellers' refresh tokens at once (\(code)); \(held) held, not marked, while "
                + "one is retried per probe interval"
        case .callRate(let app, let needed, let allowed):
            Self.appPrefix(app)
                + "the sellers need \(Self.rate(needed)) calls a second to be refreshed at the policy's times, more "
                + "than max_calls_per_second (\(Self.rate(allowed))): refreshes are planned later in the tokens' lives "
                + "(a tenth left) so that the calls fit; raise max_calls_per_second to at least "
                + "\(Self.rate(needed)) if the gateway's quota allows"
        }
    }
}
