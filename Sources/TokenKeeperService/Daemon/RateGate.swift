import Synchronization

/// A token bucket on the monotonic clock, for calls that arrive from
/// outside (the callback's code exchanges, a proxy client's calls): it holds
/// `burst` calls and refills at `rate()` a second, read at each take so
/// that a rate that changes (live nodes, a reload) applies at once.
final class RateGate: Sendable {
    let burst: Double
    private let rate: @Sendable () -> Double
    private let state: Mutex<(tokens: Double, at: ContinuousClock.Instant?)>

    init(burst: Double, rate: @escaping @Sendable () -> Double) {
        self.burst = burst
        self.rate = rate
        state = Mutex((burst, nil))
    }

    /// A fixed rate, holding one second's calls (at least one).
    convenience init(perSecond rate: Double) {
        self.init(burst: max(1, rate), rate: { rate })
    }

    /// Takes one call's worth if there is one.
    func tryTake(now: ContinuousClock.Instant = .now) -> Bool {
        let perSecond = rate()
        return state.withLock { state in
            if let at = state.at, now > at {
                let elapsed = Double((now - at).components.seconds) + Double((now - at).components.attoseconds) / 1e18
                state.tokens = min(burst, state.tokens + elapsed * perSecond)
            }
            state.at = now
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
    }
}
