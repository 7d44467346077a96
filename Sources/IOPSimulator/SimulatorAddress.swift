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

    public var description: String { baseURL }
}
