import Synchronization

/// Spaces the callback's code exchanges (`/auth/token/create`): they count
/// against the app's call rate, at a share of it (``RateShare/callbackRate``),
/// with a burst of a few (sellers follow their links one by one). When the
/// app's rate is unlimited, one a second. A callback over the budget is
/// refused before its state is used, and spends no call.
final class ExchangeBudget: Sendable {
    static let burst = 3.0
    /// The share of a node's call rate kept for code exchanges.
    static let share = 0.05
    private let rate: @Sendable () -> Double?
    private let state = Mutex<(tokens: Double, at: ContinuousClock.Instant?)>((burst, nil))

    init(rate: @escaping @Sendable () -> Double?) {
        self.rate = rate
    }

    /// Takes one exchange's worth if there is one.
    func tryTake(now: ContinuousClock.Instant = .now) -> Bool {
        let perSecond = max(rate() ?? 1, 0.01)
        return state.withLock { state in
            if let at = state.at, now > at {
                let elapsed = Double((now - at).components.seconds) + Double((now - at).components.attoseconds) / 1e18
                state.tokens = min(Self.burst, state.tokens + elapsed * perSecond)
            }
            state.at = now
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
    }
}
