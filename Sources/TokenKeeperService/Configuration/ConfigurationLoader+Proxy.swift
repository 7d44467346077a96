import Foundation
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#endif

/// Where the signing proxy listens: a loopback `HOST:PORT`, or a Unix socket.
public enum ProxyAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(ListenAddress)
    case unix(path: String)

    /// Parses `proxy.listen`. Only a loopback address or a Unix socket: the
    /// proxy speaks plain HTTP and answers with sellers' data.
    public init(_ text: String, key: String) throws(ConfigurationError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard path.hasPrefix("/"), path.utf8.count < 108 else {
                throw ConfigurationError(
                    key: key, problem: "'\(text)' is not unix: and an absolute path of under 108 bytes",
                    remedy: "write e.g. unix:/run/tokenkeeper/proxy.sock")
            }
            self = .unix(path: path)
            return
        }
        let address = try ListenAddress(text, key: key)
        guard ConfigurationLoader.isLoopback(host: address.host) else {
            throw ConfigurationError(
                key: key, problem: "'\(text)' is not a loopback address: the proxy speaks plain HTTP",
                remedy: "listen on 127.0.0.1:PORT or unix:/run/tokenkeeper/proxy.sock; readers on other hosts "
                    + "reach it through a TLS proxy of yours (docs/PROXY.md)")
        }
        self = .tcp(address)
    }

    public var description: String {
        switch self {
        case .tcp(let address): address.description
        case .unix(let path): "unix:\(path)"
        }
    }
}

extension ConfigurationLoader {
    /// `proxy.*`, the clients, and the apps' API URLs.
    static func validateProxy(_ configuration: TokenKeeperConfiguration) throws(ConfigurationError) {
        for app in configuration.apps {
            if let url = app.apiURL {
                try requireHTTPURL(
                    url, key: configuration.keyName("api_url", of: app), example: "https://api-sg.aliexpress.com/rest")
            }
            for (country, url) in app.apiURLs.sorted(by: { $0.key < $1.key }) {
                try requireHTTPURL(
                    url, key: configuration.keyName("api_urls.\(country)", of: app),
                    example: "https://api.lazada.\(country)/rest")
            }
        }
        let proxy = configuration.proxy
        try range(proxy.timeoutSeconds, 1...300, "proxy.timeout_seconds")
        try range(proxy.refreshShare, 0.05...0.9, "proxy.refresh_share")
        try range(Double(proxy.maxRequestBytes), 1024...67_108_864, "proxy.max_request_bytes")
        try range(Double(proxy.maxConcurrentCalls), 1...4096, "proxy.max_concurrent_calls")
        if let daily = proxy.appDailyCalls { try range(daily, 1...1e12, "proxy.app_daily_calls") }
        for (app, daily) in proxy.appDailyCallsByApp.sorted(by: { $0.key < $1.key }) {
            try require(
                configuration.app(named: app) != nil, "proxy.app_daily_calls.\(app)",
                "names no configured app (\(configuration.apps.map(\.name.rawValue).joined(separator: ", ")))")
            try range(daily, 1...1e12, "proxy.app_daily_calls.\(app)")
        }
        var keys: [String: String] = [:]
        for client in proxy.clients {
            let prefix = "proxy.clients.\(client.name)"
            try require(!client.key.isEmpty, "\(prefix).key", "is not set: every client signs with a key of its own")
            if let other = keys.updateValue(client.name, forKey: client.key) {
                throw ConfigurationError(
                    key: "\(prefix).key", problem: "is also client \(other)'s key",
                    remedy: "give each client a key of its own (tokenkeeper proxy-client new NAME)")
            }
            for app in client.apps ?? [] where configuration.app(named: app) == nil {
                throw ConfigurationError(
                    key: "\(prefix).apps", problem: "names app \(app), which is not configured",
                    remedy:
                        "list only apps of the configuration (\(configuration.apps.map(\.name.rawValue).joined(separator: ", ")))"
                )
            }
            if let sellers = client.sellers {
                try require(
                    !sellers.isEmpty && sellers.allSatisfy { !$0.isEmpty }, "\(prefix).sellers",
                    "must list seller ids (leave it out for every seller)")
            }
            if let rate = client.maxCallsPerSecond {
                try range(rate, 0.1...10_000, "\(prefix).max_calls_per_second")
            }
        }
        guard let listen = proxy.listen else { return }
        let address = try ProxyAddress(listen, key: "proxy.listen")
        try require(
            !proxy.clients.isEmpty, "proxy.clients",
            "proxy.listen is set but no client is configured: add one with tokenkeeper proxy-client new NAME")
        if case .tcp(let tcp) = address {
            for (key, other) in [
                ("callback.listen", configuration.callback.listen), ("metrics.listen", configuration.metrics.listen),
            ] {
                if let other, let otherAddress = try? ListenAddress(other, key: ""), otherAddress == tcp {
                    throw ConfigurationError(
                        key: "proxy.listen", problem: "is the same address as \(key)",
                        remedy: "give each listener its own port")
                }
            }
        }
        if let group = proxy.socketGroup {
            guard case .unix = address else {
                throw ConfigurationError(
                    key: "proxy.socket_group", problem: "is set but proxy.listen is not a Unix socket",
                    remedy: "leave it out, or listen on unix:/path")
            }
            try require(getgrnam(group) != nil, "proxy.socket_group", "names group \(group), which does not exist")
        }
    }
}
