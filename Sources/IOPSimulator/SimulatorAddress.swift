/// Where a started simulator listens.
public struct SimulatorAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The REST root, e.g. `/rest`.
    public var basePath: String

    /// What a client configures as its gateway URL, e.g. `http://127.0.0.1:54321/rest`.
    public var baseURL: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "http://\(hostPart):\(port)\(basePath)"
    }

    /// Where the iop SDKs send calls that name their API in `method`, e.g.
    /// `http://127.0.0.1:54321/sync`: `sync` in place of the base path's last
    /// component, as `https://api-sg.aliexpress.com/sync` sits beside `/rest`.
    public var syncURL: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "http://\(hostPart):\(port)\(Self.syncPath(basePath: basePath))"
    }

    public var description: String { baseURL }

    static func syncPath(basePath: String) -> String {
        let parent = basePath.lastIndex(of: "/").map { basePath[..<$0] } ?? ""
        return parent + "/sync"
    }
}
