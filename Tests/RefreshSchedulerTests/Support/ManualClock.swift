import Synchronization
import TokenKeeperCore

/// A wall clock that moves only when a test moves it.
final class ManualClock: WallClock {
    private let current: Mutex<Timestamp>

    /// 2025-11-26T18:40:18Z.
    static let start = Timestamp(millisecondsSince1970: 1_764_182_418_000)

    init(_ start: Timestamp = ManualClock.start) {
        current = Mutex(start)
    }

    func now() -> Timestamp {
        current.withLock { $0 }
    }

    func advance(by duration: Duration) {
        current.withLock { $0 = $0 + duration }
    }

    func set(_ timestamp: Timestamp) {
        current.withLock { $0 = timestamp }
    }
}
