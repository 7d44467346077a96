import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file of a listener's Unix socket: who may connect is who may open it.
enum UnixSocketFile {
    /// Removes a socket an earlier run left at `path` (a crash leaves it, and
    /// binding would fail); anything that is not a socket, or a socket some
    /// process still listens on (a second daemon), is left alone, and the
    /// bind then fails naming the path.
    static func removeStale(at path: String, logger: Logger) {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return }
        guard !isListening(path) else {
            logger.error("another process listens on the socket; it is left alone", metadata: ["path": "\(path)"])
            return
        }
        if unlink(path) == 0 {
            logger.info("removed the socket an earlier run left", metadata: ["path": "\(path)"])
        }
    }

    /// Whether a connection to the socket at `path` is accepted.
    static func isListening(_ path: String) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return connected == 0
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
