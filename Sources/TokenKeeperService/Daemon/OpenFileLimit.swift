#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's open-file limit, and what the listeners may take of it.
/// Every connection, to the gateway, the stores or a listener, is a
/// descriptor; a flood of connections to a listener must never leave the
/// gateway pool without one.
enum OpenFileLimit {
    /// Descriptors kept for everything but the listeners: the gateway pool,
    /// the stores, the hook, the log.
    static let reserved = 256

    /// Raises the soft limit to the hard one (at most 65,536), as a server
    /// that holds many connections should; returns the soft limit now.
    @discardableResult
    static func raise() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        let wanted = min(limit.rlim_max, 65_536)
        if limit.rlim_cur < wanted {
            var raised = limit
            raised.rlim_cur = wanted
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }

    /// Each listener's connection cap: half of what is left after
    /// ``reserved``, shared among `listeners`; between 16 and 1,024.
    static func connectionCap(softLimit: Int, listeners: Int) -> Int {
        let spare = max(0, softLimit - reserved)
        return min(1024, max(16, spare / 2 / max(1, listeners)))
    }
}
