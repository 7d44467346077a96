import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The other peer tokenkeeper talks to besides the gateway: systemd's notify
/// socket. A datagram socket to name in `NOTIFY_SOCKET`; it keeps every line
/// received (`READY=1`, `WATCHDOG=1`, `STATUS=…`) with the moment it arrived.
/// For tests and benchmarks.
public final class NotifySocket: Sendable {
    public let path: String
    private let descriptor: Int32
    private let received = Locked<[(at: ContinuousClock.Instant, line: String)]>([])

    /// Binds a new socket at `path` (an existing file there is replaced).
    public init(path: String) throws {
        self.path = path
        unlink(path)
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw POSIXError(.ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            close(descriptor)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }

    /// Every line received so far, oldest first.
    public var lines: [String] {
        drain()
        return received.withLock { $0.map(\.line) }
    }

    /// When `line` (a whole line, such as `READY=1`) first arrived, if it has.
    public func firstArrival(of line: String) -> ContinuousClock.Instant? {
        drain()
        return received.withLock { $0.first { $0.line == line }?.at }
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            guard count > 0 else { return }
            let now = ContinuousClock.now
            let lines = String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n")
            received.withLock { $0 += lines.map { (now, String($0)) } }
        }
    }

    deinit {
        close(descriptor)
        unlink(path)
    }
}
