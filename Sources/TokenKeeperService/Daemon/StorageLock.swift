#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One daemon per storage directory: an exclusive `flock` on
/// `tokenkeeper.lock`, which holds the owner's pid for the message a second
/// daemon prints. The kernel drops the lock when the process dies, so a crash
/// never leaves a stale lock behind.
public final class StorageLock: Sendable {
    public static let fileName = "tokenkeeper.lock"

    public struct HeldElsewhere: Error, CustomStringConvertible {
        public var path: String
        public var holderPID: Int32?
        public var description: String {
            let holder = holderPID.map { "process \($0)" } ?? "another process"
            return "another tokenkeeper daemon (\(holder)) is already running on \(path); "
                + "stop it first, or use 'tokenkeeper refresh' which works beside it"
        }
    }

    public struct Failed: Error, CustomStringConvertible {
        public var description: String
    }

    private let descriptor: Int32
    public let path: String

    /// Takes the lock or throws ``HeldElsewhere`` naming the holder's pid.
    public init(directory: String) throws {
        path = directory + "/" + Self.fileName
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else {
            throw Failed(description: "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = Self.readPID(descriptor)
            close(descriptor)
            throw HeldElsewhere(path: path, holderPID: holder)
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pwrite(descriptor, text, text.count, 0)
    }

    deinit {
        _ = ftruncate(descriptor, 0)
        close(descriptor)
    }

    private static func readPID(_ descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingWhitespace()
        return Int32(text)
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}

extension StorageLock {
    /// Whether a daemon holds the lock on `directory`, without taking it.
    public enum Probe: Sendable, Equatable {
        case running(pid: Int32?)
        case notRunning
        /// The lock file cannot be opened by this user.
        case unknown(String)
    }

    public static func probe(directory: String) -> Probe {
        let path = directory + "/" + fileName
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            return errno == ENOENT ? .notRunning : .unknown("\(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        // A shared lock is refused while the daemon holds its exclusive one.
        if flock(descriptor, LOCK_SH | LOCK_NB) == 0 {
            flock(descriptor, LOCK_UN)
            return .notRunning
        }
        return .running(pid: readPID(descriptor))
    }
}
