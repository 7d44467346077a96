#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// sd_notify without libsystemd: one datagram per message to `$NOTIFY_SOCKET`
/// (a path, or an abstract socket when it starts with `@`). Does nothing when
/// the variable is absent, so the daemon runs the same outside systemd.
public struct SystemdNotifier: Sendable {
    private let socketPath: String?

    public init(environment: [String: String]) {
        let path = environment["NOTIFY_SOCKET"]
        socketPath = (path?.isEmpty ?? true) ? nil : path
    }

    public var isEnabled: Bool { socketPath != nil }

    /// The watchdog interval systemd expects pings within (`$WATCHDOG_USEC`),
    /// if this process is the one it watches (`$WATCHDOG_PID`).
    public static func watchdogInterval(environment: [String: String]) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"], let value = Int32(pid), value != getpid() { return nil }
        return .microseconds(usec)
    }

    public func ready(status: String? = nil) { send(["READY=1"] + (status.map { ["STATUS=\($0)"] } ?? [])) }
    public func status(_ text: String) { send(["STATUS=\(text)"]) }
    public func watchdog() { send(["WATCHDOG=1"]) }
    public func reloading() { send(["RELOADING=1"]) }
    public func stopping() { send(["STOPPING=1"]) }

    /// Sends `KEY=value` lines in one datagram. Failures are ignored: a lost
    /// notification must never stop the daemon. Non-blocking: the scheduler
    /// sends from its own loop, and a receiver that stopped reading (a hung
    /// manager, a full queue) must not freeze refreshing; that datagram is lost.
    @discardableResult
    public func send(_ lines: [String]) -> Bool {
        guard let socketPath else { return false }
        let message = lines.map { $0.replacingNewlinesWithSpaces() }.joined(separator: "\n")
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in pathBytes.enumerated() { buffer[index] = byte }
        }
        // An abstract address is exactly as long as its name; a path one includes the NUL.
        let length = MemoryLayout<sa_family_t>.size + pathBytes.count + (abstract ? 0 : 1)
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                sendto(
                    descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), socketAddress,
                    socklen_t(length))
            }
        }
        return sent == bytes.count
    }
}

extension String {
    fileprivate func replacingNewlinesWithSpaces() -> String {
        String(map { $0.isNewline ? " " : $0 })
    }
}
