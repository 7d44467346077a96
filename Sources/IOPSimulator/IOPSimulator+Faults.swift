import Synchronization

extension IOPSimulator {
    /// Replaces the random fault probabilities.
    public func setFaultInjection(_ faults: FaultInjection) {
        updateBehavior { $0.faults = faults }
    }

    /// Makes the next `count` requests (any API, any seller) fail with `kind`,
    /// before any random fault is drawn: for tests that need one fault exactly.
    /// - Parameter appKey: Only requests naming this app key meet these faults
    ///   (a ``FaultKind/throttled`` then bans that app alone); nil for requests of any app.
    public func injectFaults(_ kind: FaultKind, count: Int = 1, forApp appKey: String? = nil) {
        core.gateway.withLock { $0.injectFaults(kind, count: count, appKey: appKey) }
    }

    /// Drops scripted faults, random fault probabilities and any running throttling ban (of every app).
    public func clearFaults() {
        core.gateway.withLock { $0.clearFaults() }
    }

    /// Answers being held back right now (slow faults, latency).
    public var heldAnswerCount: Int {
        core.heldAnswerCount
    }

    /// Sends every held answer now instead of at the end of its delay, so a test
    /// can keep requests in flight exactly as long as it needs.
    public func releaseHeldAnswers() {
        core.releaseHeldAnswers()
    }
}
