public import TokenKeeperCore
import Synchronization

/// A wall clock that moves only when a test moves it.
public final class ManualWallClock: WallClock {
    private let current: Mutex<Timestamp>

    /// 2025-11-26T18:40:18Z, a Wednesday.
    public static let start = Timestamp(millisecondsSince1970: 1_764_182_418_000)

    public init(_ start: Timestamp = ManualWallClock.start) {
        current = Mutex(start)
    }

    public func now() -> Timestamp {
        current.withLock { $0 }
    }

    public func advance(by duration: Duration) {
        current.withLock { $0 = $0 + duration }
    }

    public func set(_ timestamp: Timestamp) {
        current.withLock { $0 = timestamp }
    }
}
