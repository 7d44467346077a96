import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file of a listener's Unix socket: who may connect is who may open it.
enum UnixSocketFile {
    /// Removes a socket an earlier run left at `path` (a crash leaves it, and
    /// binding would fail); anything that is not a socket is left alone, and
    /// the bind then fails naming the path.
    static func removeStale(at path: String, logger: Logger) {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return }
        if unlink(path) == 0 {
            logger.info("removed the socket an earlier run left", metadata: ["path": "\(path)"])
        }
    }

    /// Sets the socket's mode and group; a failure is logged (the socket
    /// then keeps the umask's mode, which the operator must fix).
    static func restrict(_ path: String, mode: UInt16, group: String?, logger: Logger) {
        if chmod(path, mode_t(mode)) != 0 {
            logger.error(
                "cannot set the socket's mode", metadata: ["path": "\(path)", "errno": "\(errno)"])
        }
        guard let group else { return }
        guard let entry = getgrnam(group) else {
            logger.error("the socket's group does not exist", metadata: ["group": "\(group)"])
            return
        }
        if chown(path, uid_t.max, entry.pointee.gr_gid) != 0 {
            logger.error(
                "cannot give the socket to its group (the daemon must be a member)",
                metadata: ["path": "\(path)", "group": "\(group)", "errno": "\(errno)"])
        }
    }
}
