/// Misuse of the simulator's Swift API (not gateway errors, which go over HTTP).
public enum IOPSimulatorError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No seller with this key was added.
    case unknownSeller(String)
    /// Sellers with this id are registered under several app keys, and no app key was given.
    case ambiguousSeller(String, appKeys: [String])
    /// ``IOPSimulator/start()`` was called twice, or after shutdown.
    case alreadyStarted
    /// The listening socket could not be opened.
    case bindFailed(host: String, port: Int, reason: String)

    public var description: String {
        switch self {
        case .unknownSeller(let id): "the simulator has no seller \"\(id)\"; add it with addSeller first"
        case .ambiguousSeller(let id, let appKeys):
            "the simulator has seller \"\(id)\" under app keys \(appKeys.joined(separator: ", ")); name the app key"
        case .alreadyStarted: "the simulator was already started; create a new one"
        case .bindFailed(let host, let port, let reason): "the simulator cannot listen on \(host):\(port): \(reason)"
        }
    }
}
