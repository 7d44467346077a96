import Foundation
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whether a lease's owner still runs: SQLite's leases are held by
/// processes of this host (keeper.db is a local file), so the process table
/// answers for owners named `ROLE-PID@HOST/RANDOM` on this host.
enum LeaseOwnerLiveness {
    /// True only when the owner is known to run: named for this host, and a
    /// process with its pid exists and runs the same program as this one (a
    /// pid reused after a reboot by another program is not the owner). An
    /// owner of another shape or host is not known to run: its lease is
    /// judged by its expiry alone.
    static func isAlive(_ owner: String) -> Bool {
        guard let name = LeaseOwnerName(owner), name.host == thisHost else { return false }
        if name.pid == getpid() { return true }
        guard kill(name.pid, 0) == 0 || errno == EPERM else { return false }
        guard let theirs = programName(of: "\(name.pid)") else { return false }
        return theirs == programName(of: "self")
    }

    private static let thisHost = ProcessInfo.processInfo.hostName

    /// `/proc/PID/comm`: the program's name as the kernel keeps it.
    private static func programName(of process: String) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(process)/comm") else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
