#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the domain reads the current time. Tests inject a manual clock; the
/// daemon uses ``SystemWallClock``.
public protocol WallClock: Sendable {
    /// The current wall-clock time.
    func now() -> Timestamp
}

/// The system's real-time clock (`CLOCK_REALTIME`).
public struct SystemWallClock: WallClock {
    public init() {}

    public func now() -> Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(millisecondsSince1970: Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000)
    }
}

/// A clock that only moves forward at a steady rate, whatever is done to the
/// wall clock: what the scheduler measures its own waits with, and how it
/// notices that the wall clock was stepped.
public protocol MonotonicClock: Sendable {
    /// Time since an arbitrary fixed origin (boot, for the system's clock).
    func uptime() -> Duration
}

/// `CLOCK_BOOTTIME`: monotonic, and it keeps counting while the machine is
/// suspended, so a resumed laptop or VM sees the time that really passed.
public struct SystemMonotonicClock: MonotonicClock {
    public init() {}

    public func uptime() -> Duration {
        var spec = timespec()
        #if os(Linux)
        clock_gettime(CLOCK_BOOTTIME, &spec)
        #else
        clock_gettime(CLOCK_MONOTONIC, &spec)
        #endif
        return .seconds(Int64(spec.tv_sec)) + .nanoseconds(Int64(spec.tv_nsec))
    }
}
