import Logging
import RefreshScheduler
import TokenKeeperCore

/// The signing proxy's parts, built from the configuration at start; a
/// reload replaces its clients and apps (``reload(_:)``).
struct ProxySetup: Sendable {
    let proxy: SigningProxy
    let clients: ProxyClients
    let apps: ProxyApps
    let daily: ProxyDailyCalls?
    let forwarder: ProxyForwarder
    let address: ProxyAddress

    /// The proxy `context` configures; nil when `proxy.listen` is not set.
    static func make(
        context: CommandContext, store: any ManagedAccountStore, scheduler: RefreshScheduler,
        metrics: DaemonMetrics?, liveNodes: @escaping @Sendable () -> Int,
        rate: @escaping @Sendable (AppName) -> Double?
    ) throws(CommandFailure) -> ProxySetup? {
        let configuration = context.configuration
        guard let listen = configuration.proxy.listen else { return nil }
        let address: ProxyAddress
        do {
            address = try ProxyAddress(listen, key: "proxy.listen")
        } catch {
            throw CommandFailure(.configuration, error.description)
        }
        let clients = ProxyClients(try Self.clients(of: context))
        let apps = ProxyApps(try Self.apps(of: context))
        let logger = Logger(label: "tokenkeeper.proxy")
        let clock = context.wallClock
        var daily: ProxyDailyCalls?
        if configuration.proxy.appDailyCalls != nil || !configuration.proxy.appDailyCallsByApp.isEmpty {
            let proxySettings = configuration.proxy
            daily = ProxyDailyCalls(
                directory: configuration.storage.backend == .sqlite ? configuration.storage.directory : nil,
                now: clock.now(),
                limit: { app in proxySettings.dailyCalls(for: app).map { $0 / Double(max(1, liveNodes())) } },
                logger: logger)
        }
        let timeout = Duration.milliseconds(Int64(configuration.proxy.timeoutSeconds * 1000))
        let forwarder = ProxyForwarder(timeout: timeout, connectTimeout: min(timeout, .seconds(10)))
        let proxy = SigningProxy(
            SigningProxy.Dependencies(
                store: store, clients: clients, apps: apps, budgets: scheduler.callBudgets, rate: rate, daily: daily,
                refresh: { key in await scheduler.refreshNow([key])[key] ?? .notAttempted },
                forwarder: forwarder, clock: clock, metrics: metrics, logger: logger))
        return ProxySetup(
            proxy: proxy, clients: clients, apps: apps, daily: daily, forwarder: forwarder, address: address)
    }

    /// The reloaded configuration's clients and apps, their secrets read,
    /// before anything running changes (a reload refused for one of them
    /// changes nothing).
    struct Prepared: Sendable {
        var clients: [ProxyClients.Client]
        var apps: [ProxyApp]
    }

    func prepare(_ context: CommandContext) throws(CommandFailure) -> Prepared {
        Prepared(clients: try Self.clients(of: context), apps: try Self.apps(of: context))
    }

    /// Takes the prepared clients and apps: a client removed is refused from
    /// its next call; calls under way go on. Returns the clients' names.
    func apply(_ prepared: Prepared) -> [String] {
        clients.replace(with: prepared.clients)
        apps.replace(with: prepared.apps)
        return prepared.clients.map(\.name).sorted()
    }

    static func clients(of context: CommandContext) throws(CommandFailure) -> [ProxyClients.Client] {
        let loader = AppSecretLoader(environment: context.environment)
        var clients: [ProxyClients.Client] = []
        for client in context.configuration.proxy.clients {
            let secret: Secret
            do {
                secret = try loader.proxyClientSecret(for: client)
            } catch {
                throw CommandFailure(.configuration, error.description)
            }
            clients.append(
                ProxyClients.Client(
                    name: client.name, key: client.key, secret: secret, apps: client.apps.map(Set.init),
                    sellers: client.sellers.map(Set.init), ratePerSecond: client.maxCallsPerSecond,
                    rate: client.maxCallsPerSecond.map { RateGate(perSecond: $0) }))
        }
        return clients
    }

    static func apps(of context: CommandContext) throws(CommandFailure) -> [ProxyApp] {
        var apps: [ProxyApp] = []
        for app in context.configuration.apps {
            apps.append(ProxyApp(name: app.name, key: app.key, secret: try context.appSecret(for: app), settings: app))
        }
        return apps
    }
}
