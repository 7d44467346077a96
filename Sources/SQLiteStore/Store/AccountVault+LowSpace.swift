import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A write-ahead log kept from eating the last of the disk.
///
/// SQLite checkpoints a log once it holds 1,000 pages (4 MiB) and keeps its
/// file at the largest size it reached (up to `journal_size_limit`). On a
/// disk with little room left, that growth alone fills it: seen on a small
/// disk, the room freed after a full disk was taken again by keeper.db's log
/// within seconds, and the pairs of the calls in flight at the stop were
/// saved to files instead of keeper.db. While less than ``lowSpaceBytes`` is
/// free, every commit is followed by a checkpoint and the log's file is cut
/// back when it starts over, so it never holds more than a commit or two.
extension AccountVault {
    /// Below this many free bytes, logs are kept small.
    static let lowSpaceBytes: UInt64 = 16 << 20
    /// The log's file size kept after a checkpoint in normal times.
    static let journalSizeLimit: Int64 = 32 << 20

    /// Called after each commit to `connection` (keeper.db or tokens.db).
    func keepLogSmallWhileLowOnSpace(_ connection: SQLiteConnection) {
        guard let free = freeBytes() else { return }
        // Back to normal only well above the mark: no switching at every commit.
        let low = lowOnSpace ? free < 2 * Self.lowSpaceBytes : free < Self.lowSpaceBytes
        // Only the connection that just committed, on the thread that owns
        // it: an import copies into tokens.db on a thread of its own.
        if low != logsCutBack.contains(ObjectIdentifier(connection)) {
            _ = try? connection.setPragma("journal_size_limit", to: .integer(low ? 0 : Self.journalSizeLimit))
            if low {
                logsCutBack.insert(ObjectIdentifier(connection))
            } else {
                logsCutBack.remove(ObjectIdentifier(connection))
            }
        }
        if low != lowOnSpace {
            lowOnSpace = low
            let metadata: Logger.Metadata = ["directory": "\(directory)", "free_bytes": "\(free)"]
            if low {
                logger.warning(
                    "little disk space left; the write-ahead logs are checkpointed after every commit until there is more",
                    metadata: metadata)
            } else {
                logger.notice("disk space is back; the write-ahead logs are checkpointed as usual", metadata: metadata)
            }
        }
        guard low else { return }
        do {
            try connection.checkpoint()
        } catch {
            logger.debug("checkpoint failed", metadata: ["path": "\(connection.path)", "error": "\(error)"])
        }
    }

    /// Bytes an unprivileged writer may still use on the store's file system.
    private func freeBytes() -> UInt64? {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }
}
