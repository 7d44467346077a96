public import TokenKeeperCore

/// The scheduler's one alarm clock: a single deadline, re-armed whenever the
/// earliest thing to do changes. The scheduler owns exactly one; there is no
/// timer per account.
///
/// ``DispatchWakeupTimer`` is the real one; tests use a manual timer driven by a
/// manual clock.
public protocol WakeupTimer: AnyObject, Sendable {
    /// Installs the function called when the armed deadline has passed. Called
    /// once, before the first ``arm(at:)``.
    func setHandler(_ handler: @escaping @Sendable () async -> Void)

    /// Fires the handler once at (or shortly after) `deadline`, replacing any
    /// deadline armed before. A deadline in the past fires at once.
    func arm(at deadline: Timestamp)

    /// Stops the timer for good; later calls to ``arm(at:)`` do nothing.
    /// Calling it more than once is harmless.
    func cancel()
}
