import Synchronization
public import TokenKeeperCore

/// A wall clock that moves only when a test moves it, with the monotonic
/// clock beside it: time passing (``advance(by:)``, ``set(_:)`` forward) moves
/// both; a step (``step(by:)``, or ``set(_:)`` backward) moves the wall clock alone.
public final class ManualWallClock: WallClock, MonotonicClock {
    private let current: Mutex<(wall: Timestamp, uptime: Duration)>

    /// 2025-11-26T18:40:18Z, a Wednesday.
    public static let start = Timestamp(millisecondsSince1970: 1_764_182_418_000)

    public init(_ start: Timestamp = ManualWallClock.start) {
        current = Mutex((start, .seconds(1000)))
    }

    public func now() -> Timestamp {
        current.withLock { $0.wall }
    }

    public func uptime() -> Duration {
        current.withLock { $0.uptime }
    }

    /// Time passes.
    public func advance(by duration: Duration) {
        current.withLock { state in
            state.wall = state.wall + duration
            state.uptime += max(duration, .zero)
        }
    }

    /// Moves the wall clock to `timestamp`: forward as time passing, backward as a step.
    public func set(_ timestamp: Timestamp) {
        current.withLock { state in
            state.uptime += max(timestamp - state.wall, .zero)
            state.wall = timestamp
        }
    }

    /// Steps the wall clock by `offset`, either way, with no time passing (a
    /// person or a VM resume setting the clock).
    public func step(by offset: Duration) {
        current.withLock { $0.wall = $0.wall + offset }
    }
}

extension [ScheduledAccount] {
    /// The deadlines alone, without the expiries the stores report beside
    /// them: what a test of the schedule compares.
    public var deadlines: [ScheduledAccount] {
        map { ScheduledAccount($0.key, due: $0.due) }
    }
}
