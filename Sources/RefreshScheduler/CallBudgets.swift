import Synchronization
public import TokenKeeperCore

/// Each app's call budget at the gateway, shared by the scheduler's
/// refreshes and the calls the signing proxy forwards for readers.
///
/// The gateway counts every call of an app key, whoever makes it, and bans
/// the key when the count is over (AliExpress until midnight, Beijing time):
/// refreshes and proxied calls must fit in one budget together. Refreshes
/// come first: proxied calls may take at most `proxyShare` of the rate
/// (their own bucket), and only while the shared bucket has a call to give,
/// so that however busy the readers are, the rest of the rate stays with
/// the refreshes.
public final class CallBudgets: Sendable {
    /// One app's buckets.
    final class Budget: Sendable {
        private struct State {
            var shared: TokenBucket
            var proxied: TokenBucket
        }
        private let state: Mutex<State>

        init(ratePerSecond: Double, proxyShare: Double) {
            state = Mutex(
                State(
                    shared: TokenBucket(ratePerSecond: ratePerSecond),
                    // Its share is a ceiling, not a quota: a turn it missed
                    // while the shared bucket was empty is not made up later
                    // (with a call and a half of room it was, and refreshes
                    // under a flood of proxied calls fell behind).
                    proxied: TokenBucket(ratePerSecond: ratePerSecond * proxyShare, capacity: 1)))
        }

        var ratePerSecond: Double { state.withLock { $0.shared.ratePerSecond } }

        /// When the scheduler's next call may start.
        func nextAvailable(_ now: Timestamp) -> Timestamp {
            state.withLock { $0.shared.nextAvailable(now) }
        }

        /// Spends a call the scheduler decided to make: it was available when
        /// it looked, though a proxied call may have taken it since (then the
        /// debt delays the next call instead).
        func take(_ now: Timestamp) {
            state.withLock { $0.shared.take(now) }
        }

        func tryTakeProxied(_ now: Timestamp) -> Timestamp? {
            state.withLock { state in
                let proxiedAt = state.proxied.nextAvailable(now)
                let sharedAt = state.shared.nextAvailable(now)
                guard proxiedAt <= now, sharedAt <= now else { return max(proxiedAt, sharedAt) }
                state.proxied.take(now)
                state.shared.take(now)
                return nil
            }
        }
    }

    private struct State {
        var budgets: [AppName: Budget] = [:]
        var proxyShare: Double
        /// Apps whose proxied calls wait after a throttling answer, until when.
        var pauses: [AppName: Timestamp] = [:]
    }
    private let state: Mutex<State>

    /// - Parameter proxyShare: The most of an app's rate proxied calls may
    ///   take (`1 - proxy.refresh_share`).
    public init(proxyShare: Double = 0.8) {
        state = Mutex(State(proxyShare: min(max(proxyShare, 0.01), 0.99)))
    }

    /// `app`'s budget at `rate` calls a second, made or re-rated (its calls
    /// spent so far are forgotten when the rate changes); nil, and no
    /// budget, when the rate is unlimited.
    func budget(for app: AppName, rate: Double?) -> Budget? {
        state.withLock { state in
            guard let rate, rate > 0 else {
                state.budgets[app] = nil
                return nil
            }
            if let budget = state.budgets[app], budget.ratePerSecond == rate { return budget }
            let budget = Budget(ratePerSecond: rate, proxyShare: state.proxyShare)
            state.budgets[app] = budget
            return budget
        }
    }

    /// Holds `app`'s proxied calls until `end`: the gateway throttled the
    /// app (its answer to a refresh or to a proxied call); a later end wins.
    public func pauseProxied(_ app: AppName, until end: Timestamp) {
        state.withLock { state in state.pauses[app] = max(state.pauses[app] ?? end, end) }
    }

    /// When `app`'s proxied calls may go again, if they are paused at `now`.
    public func proxiedPause(_ app: AppName, now: Timestamp) -> Timestamp? {
        state.withLock { state in
            guard let end = state.pauses[app] else { return nil }
            guard end > now else {
                state.pauses[app] = nil
                return nil
            }
            return end
        }
    }

    /// What the proxy may do about one call of `app` now.
    public enum ProxiedCall: Sendable, Equatable {
        /// Made: one call of the budget is spent.
        case granted
        /// Not before this moment.
        case notBefore(Timestamp)
    }

    /// Takes one call of `app`'s budget for a proxied call, if its share
    /// and the shared bucket both have one now. `rate` is the app's rate on
    /// this node, which makes the budget when the scheduler has not yet
    /// (its lane is made when the app's first seller comes due); an app
    /// without a rate always grants.
    public func tryTakeProxied(_ app: AppName, rate: Double?, now: Timestamp) -> ProxiedCall {
        guard let rate, rate > 0 else { return .granted }
        let budget = state.withLock { state in
            if let budget = state.budgets[app] { return budget }
            let budget = Budget(ratePerSecond: rate, proxyShare: state.proxyShare)
            state.budgets[app] = budget
            return budget
        }
        return budget.tryTakeProxied(now).map { .notBefore($0) } ?? .granted
    }
}
