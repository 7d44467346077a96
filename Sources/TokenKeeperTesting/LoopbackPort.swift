#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A TCP port on 127.0.0.1 for a server a test starts later (a daemon's
/// listener, a PostgreSQL server).
///
/// Not one the kernel picks for port 0: those come from the ephemeral range
/// (`ip_local_port_range`, 32768–60999 by default), the same range every
/// socket bound to port 0 and every outgoing connection takes its port from,
/// so a port found that way and released is soon handed to another test's
/// simulator or receiver — which then answered in its place (a 404 where
/// `/metrics` was expected). These come from below that range, at random,
/// checked free by binding them.
public enum LoopbackPort {
    public static let range = 20_000..<32_000

    public static func free() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: range)
            if isFree(port) { return port }
        }
        throw LoopbackPortError()
    }

    static func isFree(_ port: Int) -> Bool {
        #if canImport(Glibc)
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let descriptor = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

public struct LoopbackPortError: Error, CustomStringConvertible {
    public var description: String { "no free loopback port in \(LoopbackPort.range) after 200 tries" }
}
