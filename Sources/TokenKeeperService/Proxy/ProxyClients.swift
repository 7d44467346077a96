import Synchronization
import TokenKeeperCore

/// The proxy's clients, by the key they sign with, replaced whole by a
/// reload: a call already past its check goes on under the client it was
/// checked as; the next call sees the new set (a revoked key is refused).
final class ProxyClients: Sendable {
    /// One client as the proxy checks it.
    struct Client: Sendable {
        var name: String
        var key: String
        var secret: Secret
        /// Nil: every app.
        var apps: Set<AppName>?
        /// Nil: every seller.
        var sellers: Set<String>?
        /// Its own calls a second (`max_calls_per_second`); nil: none but the app's budget.
        var ratePerSecond: Double?
        var rate: RateGate?

        /// The app a call is for: the one its path names, else the client's
        /// only app (or the configuration's only app).
        func app(named: AppName?, configured: [AppName]) -> Result<AppName, ProxyRefusal> {
            if let named {
                guard configured.contains(named) else { return .failure(.unknownApp(named.rawValue)) }
                guard apps?.contains(named) ?? true else { return .failure(.appNotAllowed(named.rawValue)) }
                return .success(named)
            }
            let usable = apps.map { Array($0) } ?? configured
            guard usable.count == 1 else { return .failure(.appNotNamed) }
            return .success(usable[0])
        }
    }

    private let byKey: Mutex<[String: Client]>

    init(_ clients: [Client] = []) {
        byKey = Mutex(Dictionary(clients.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first }))
    }

    /// The client signing with `key`.
    func client(key: String) -> Client? {
        byKey.withLock { $0[key] }
    }

    /// Replaces the set; a client whose rate did not change keeps its gate
    /// (a reload is not a way round a client's rate).
    func replace(with clients: [Client]) {
        byKey.withLock { current in
            var next: [String: Client] = [:]
            for var client in clients {
                if let old = current[client.key], old.name == client.name, old.ratePerSecond == client.ratePerSecond {
                    client.rate = old.rate
                }
                next[client.key] = client
            }
            current = next
        }
    }
}

/// Where and as whom the proxy forwards each app's calls.
struct ProxyApp: Sendable {
    var name: AppName
    var key: String
    var secret: Secret
    var settings: TokenKeeperConfiguration.AppSettings
}

/// The apps the proxy forwards for, replaced whole by a reload.
final class ProxyApps: Sendable {
    private let apps: Mutex<[AppName: ProxyApp]>

    init(_ apps: [ProxyApp] = []) {
        self.apps = Mutex(Dictionary(apps.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }))
    }

    func app(_ name: AppName) -> ProxyApp? { apps.withLock { $0[name] } }

    var names: [AppName] { apps.withLock { $0.keys.sorted() } }

    func replace(with apps: [ProxyApp]) {
        self.apps.withLock { $0 = Dictionary(apps.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }) }
    }
}
