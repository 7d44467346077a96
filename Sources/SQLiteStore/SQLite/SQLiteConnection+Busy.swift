import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SQLiteConnection {
    /// How long a statement waits for another connection's lock before it
    /// fails with `SQLITE_BUSY`; `.zero` fails at once.
    ///
    /// The wait polls the lock every ``BusyWait/pollInterval`` (1 ms) until
    /// the timeout, measured on the monotonic clock. SQLite's own busy
    /// handler (`sqlite3_busy_timeout`) sleeps 1, 2, 5, 10, … then 100 ms
    /// between polls: beside another process that writes transaction after
    /// transaction (an `import` of a large file), whose lock is free for a few
    /// milliseconds between them, it misses gap after gap and can wait out its
    /// whole timeout, a poll every 100 ms keeping step with the other
    /// process's rhythm. Polling every millisecond, a waiter takes the lock
    /// at the first gap, so it waits about one of the other's transactions.
    public func setBusyTimeout(_ timeout: Duration) throws(SQLiteError) {
        let connection = try liveHandle()
        let nanoseconds = BusyWait.nanoseconds(timeout)
        busyWait.timeoutNanoseconds = nanoseconds
        let code: Int32
        if nanoseconds == 0 {
            code = sqlite3_busy_handler(connection, nil, nil)
        } else {
            // The state is owned by the connection, which outlives the handle.
            code = sqlite3_busy_handler(
                connection,
                { context, attempts in
                    guard let context else { return 0 }
                    return Unmanaged<BusyWait>.fromOpaque(context).takeUnretainedValue().retry(after: attempts)
                        ? 1 : 0
                }, Unmanaged.passUnretained(busyWait).toOpaque())
        }
        guard code == SQLITE_OK else { throw SQLiteError(code: code, connection: connection, sql: nil) }
    }
}

/// The state of one connection's busy handler: when the current wait began,
/// and how long it may last. Used only on the connection's own thread, from
/// inside SQLite's calls.
final class BusyWait {
    /// Between two polls of the lock.
    static let pollInterval: UInt64 = 1_000_000

    var timeoutNanoseconds: UInt64 = 0
    private var startedAt: UInt64 = 0

    /// Called by SQLite when a lock is taken; `attempts` is how many times it
    /// was called before for the same locking event (0 for the first).
    /// Sleeps until the next poll and returns true, or false when the
    /// timeout has passed (the statement then fails with `SQLITE_BUSY`).
    func retry(after attempts: Int32) -> Bool {
        let now = Self.monotonicNanoseconds()
        if attempts == 0 { startedAt = now }
        let waited = now &- startedAt
        guard waited < timeoutNanoseconds else { return false }
        Self.sleep(nanoseconds: min(Self.pollInterval, timeoutNanoseconds - waited))
        return true
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        guard duration > .zero else { return 0 }
        let (seconds, attoseconds) = duration.components
        return UInt64(clamping: seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    private static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR {
            request = remaining
        }
    }
}
