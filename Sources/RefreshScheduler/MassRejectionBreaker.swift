import TokenKeeperCore

/// When a burst of rejected refresh tokens is taken for a platform incident
/// rather than for that many sellers revoking the app
/// (`refresh.mass_rejection.*`).
public struct MassRejectionPolicy: Sendable, Equatable {
    /// More rejected sellers than this in the window trip the breaker.
    public var sellers: Int
    /// ...and more than this fraction of the refreshes in the window.
    public var fraction: Double
    /// The window over which both are counted.
    public var window: Duration
    /// After rejections have gone on this long, the held sellers are marked as usual.
    public var hold: Duration

    public init(
        sellers: Int = 10, fraction: Double = 0.2, window: Duration = .seconds(600), hold: Duration = .seconds(6 * 3600)
    ) {
        self.sellers = sellers
        self.fraction = fraction
        self.window = window
        self.hold = hold
    }
}

/// Counts the gateway's judgements of refresh tokens (accepted or rejected as
/// dead) in one-second buckets over a sliding window, and says when the
/// rejections look like a mass event. Constant memory whatever the call rate.
struct MassRejectionBreaker {
    let policy: MassRejectionPolicy
    private var buckets: [(second: Int64, judged: Int, rejected: Int)] = []
    /// Rejections since the gateway last accepted a refresh token: a sudden
    /// outage shows here even when the window still holds many successes.
    private var rejectionsInARow = 0
    private(set) var trippedAt: Timestamp?

    init(policy: MassRejectionPolicy) {
        self.policy = policy
    }

    var isTripped: Bool { trippedAt != nil }

    /// Counts one judgement at `now`.
    ///
    /// Trips when more than ``MassRejectionPolicy/sellers`` sellers were
    /// rejected in the window and more than ``MassRejectionPolicy/fraction``
    /// of the window's judgements were rejections, or when more than
    /// `sellers` rejections came in a row (an outage that began after many
    /// successes, or in a fleet too slow to fill the window).
    mutating func record(rejected: Bool, at now: Timestamp) {
        let second = now.millisecondsSince1970 / 1000
        trim(now)
        rejectionsInARow = rejected ? rejectionsInARow + 1 : 0
        if !rejected, trippedAt != nil, !holds(at: now) {
            // The hold ran out and the gateway accepts tokens again: re-arm.
            reset()
        }
        if let last = buckets.last, last.second == second {
            buckets[buckets.count - 1].judged += 1
            if rejected { buckets[buckets.count - 1].rejected += 1 }
        } else {
            buckets.append((second, 1, rejected ? 1 : 0))
        }
        if rejected, trippedAt == nil {
            let (judged, rejections) = totals
            let burst = rejections > policy.sellers && Double(rejections) > policy.fraction * Double(judged)
            // In a row it trips however slowly the fleet refreshes (a few
            // calls an hour never fill the window) or however many successes
            // came before.
            if burst || rejectionsInARow > policy.sellers {
                trippedAt = now
            }
        }
    }

    /// True while a rejection is to be held rather than marked: tripped, and
    /// the hold has not run out.
    func holds(at now: Timestamp) -> Bool {
        guard let trippedAt else { return false }
        return now - trippedAt < policy.hold
    }

    /// The gateway accepted a refresh token: whatever tripped was a glitch.
    mutating func reset() {
        trippedAt = nil
        rejectionsInARow = 0
        buckets.removeAll()
    }

    /// Moves the window by `offset` (the wall clock was stepped).
    mutating func shift(by offset: Duration) {
        trippedAt = trippedAt.map { $0 + offset }
        let seconds = offset.wholeMilliseconds / 1000
        for index in buckets.indices { buckets[index].second += seconds }
    }

    private var totals: (judged: Int, rejected: Int) {
        buckets.reduce(into: (0, 0)) { sum, bucket in
            sum.0 += bucket.judged
            sum.1 += bucket.rejected
        }
    }

    private mutating func trim(_ now: Timestamp) {
        let oldest = (now - policy.window).millisecondsSince1970 / 1000
        if let index = buckets.firstIndex(where: { $0.second > oldest }) {
            buckets.removeFirst(index)
        } else {
            buckets.removeAll()
        }
    }
}
