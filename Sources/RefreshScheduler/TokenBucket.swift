import TokenKeeperCore

/// Spaces gateway calls to at most `ratePerSecond`, driven by the injected wall
/// clock. The bucket holds a call and a half, so calls are evenly spaced
/// rather than bursty (over any span of `t` seconds at most `1.5 + rate × t`
/// calls start), and a call that starts a little after its turn (a timer's
/// wake-up, a busy core) does not push every later one back: with room for
/// one call only, each such lag was lost for good, and 5,000 calls at 10 a
/// second fell 2.5 s behind their plan (`Benchmarks --only rate`).
struct TokenBucket {
    let ratePerSecond: Double
    private var tokens: Double
    private var updatedAt: Timestamp?
    /// The calls it holds: 1.5 by default; 1 for a share that must not
    /// make up the turns it missed (the proxy's, ``CallBudgets``).
    let capacity: Double

    init(ratePerSecond: Double, capacity: Double = 1.5) {
        precondition(ratePerSecond > 0 && capacity >= 1)
        self.ratePerSecond = ratePerSecond
        self.capacity = capacity
        tokens = 1
    }

    private mutating func refill(_ now: Timestamp) {
        defer { updatedAt = now }
        // A clock set backwards only moves the baseline: it must not stall
        // calls for as long as the jump.
        guard let updatedAt, now > updatedAt else { return }
        let elapsedMs = Double((now - updatedAt).wholeMilliseconds)
        tokens = min(capacity, tokens + elapsedMs * ratePerSecond / 1000)
    }

    /// Takes one call's worth if available.
    mutating func tryTake(_ now: Timestamp) -> Bool {
        refill(now)
        // Tolerate floating-point dust so that 100 ms at 10/s yields a call.
        guard tokens >= 1 - 1e-9 else { return false }
        tokens = max(0, tokens - 1)
        return true
    }

    /// Spends one call whether or not it is there: down to one call of debt,
    /// which the refill pays before the next call.
    mutating func take(_ now: Timestamp) {
        refill(now)
        tokens = max(-1, tokens - 1)
    }

    /// When the next call may start.
    mutating func nextAvailable(_ now: Timestamp) -> Timestamp {
        refill(now)
        guard tokens < 1 - 1e-9 else { return now }
        // Less the same dust: 60 ms left must not round up to 61.
        let waitMs = ((1 - tokens) * 1000 / ratePerSecond - 1e-6).rounded(.up)
        return now + .milliseconds(Int64(waitMs))
    }
}
