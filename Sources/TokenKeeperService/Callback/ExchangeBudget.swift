/// Spaces the callback's code exchanges (`/auth/token/create`): they count
/// against the app's call rate, at a share of it (``RateShare/callbackRate``),
/// with a burst of a few (sellers follow their links one by one). When the
/// app's rate is unlimited, one a second. A callback over the budget is
/// refused before its state is used, and spends no call.
final class ExchangeBudget: Sendable {
    static let burst = 3.0
    /// The share of a node's call rate kept for code exchanges.
    static let share = 0.05
    private let gate: RateGate

    init(rate: @escaping @Sendable () -> Double?) {
        gate = RateGate(burst: Self.burst) { max(rate() ?? 1, 0.01) }
    }

    /// Takes one exchange's worth if there is one.
    func tryTake(now: ContinuousClock.Instant = .now) -> Bool {
        gate.tryTake(now: now)
    }
}
