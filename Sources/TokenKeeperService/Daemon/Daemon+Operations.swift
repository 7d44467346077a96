import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TokenKeeperCore
import TokenKeeperHTTP

/// The operator's loop around the scheduler: the notifier and the HTTP
/// listeners (callback, metrics and health), built from the configuration.
extension Daemon {
    /// The notifier and the names of its channels.
    func eventNotifier(
        store: any EventOutbox, links: AuthorizationLinks?, clock: any WallClock, metrics: DaemonMetrics
    ) throws(CommandFailure) -> (notifier: EventNotifier, channelNames: [String]) {
        let configuration = context.configuration
        let notify = configuration.notify
        var channels: [any NotificationChannel] = []
        if let command = notify.command {
            channels.append(
                ExecHookChannel(
                    command: command, timeout: .milliseconds(Int64(notify.commandTimeoutSeconds * 1000)),
                    environment: context.environment))
        }
        if let url = notify.webhookURL, let secret = try context.webhookSecret() {
            channels.append(
                WebhookChannel(
                    url: url, secret: secret, timeout: .milliseconds(Int64(notify.webhookTimeoutSeconds * 1000)),
                    clock: clock))
        }
        var settings = EventNotifier.Settings()
        settings.retryWindow = .milliseconds(Int64(notify.retryHours * 3_600_000))
        settings.retryInitial = .milliseconds(Int64(notify.retryInitialSeconds * 1000))
        settings.retryMax = .milliseconds(Int64(notify.retryMaxSeconds * 1000))
        settings.reauthWarning = notify.reauthWarning
        settings.reauthCheckInterval = .milliseconds(Int64(notify.reauthCheckSeconds * 1000))
        let notifier = EventNotifier(
            store: store, channels: channels, links: links, settings: settings, clock: clock, metrics: metrics,
            logger: Logger(label: "tokenkeeper.notify"))
        return (notifier, channels.map(\.name))
    }

    /// Links for events, when some app's key and redirect_uri allow them
    /// (events of the other apps' sellers then carry none).
    func authorizationLinks(store: any CallbackStateStore, clock: any WallClock) async throws(CommandFailure)
        -> AuthorizationLinks?
    {
        let configuration = context.configuration
        guard configuration.apps.contains(where: { AuthorizationLinks.missingSettings($0, in: configuration) == nil })
        else { return nil }
        do {
            return try await AuthorizationLinks.load(
                store: store, configuration: context.configuration, now: clock.now())
        } catch {
            throw CommandFailure(.failure, "the callback's state key cannot be read or created in the store: \(error)")
        }
    }

    /// The listeners the configuration asks for.
    /// The listeners the configuration asks for. The callback serves every
    /// app from one listener: the path of each app's `redirect_uri` picks
    /// the app (its gateway, its exchange budget, its accounts).
    func listeners(
        store: any OperatorStore, gateways: [AppName: any TokenGateway], links: AuthorizationLinks?,
        clock: any WallClock, metrics: DaemonMetrics, status: DaemonStatus,
        exchangeRate: @escaping @Sendable (AppName) -> Double?, onStored: @escaping @Sendable (String) -> Void
    ) throws(CommandFailure) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        let configuration = context.configuration
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let listen = configuration.callback.listen {
            let address = try Self.address(listen, key: "callback.listen")
            guard let links else {
                throw CommandFailure(
                    .configuration, "callback.listen needs each app's key and redirect_uri (a URL with a path)")
            }
            var routes: [HTTPRoute] = []
            for app in configuration.apps {
                guard let path = URLComponents(string: app.redirectURI ?? "")?.path, !path.isEmpty,
                    let gateway = gateways[app.name]
                else {
                    let key = configuration.keyName("redirect_uri", of: app)
                    throw CommandFailure(.configuration, "callback.listen needs \(key) (a URL with a path)")
                }
                var logger = Logger(label: "tokenkeeper.callback")
                if configuration.declaresApps { logger[metadataKey: "app"] = "\(app.name)" }
                let reauthorizer = Reauthorizer(
                    store: store, app: app.name, gateway: gateway, signer: links.signer,
                    stateTTL: .milliseconds(Int64(configuration.callback.stateTTLHours * 3_600_000)),
                    policy: configuration.refreshPolicy, storageDirectory: configuration.storage.directory,
                    clock: clock, logger: logger, budget: ExchangeBudget(rate: { exchangeRate(app.name) }),
                    onStored: onStored)
                routes.append(HTTPRoute(path: path) { query in await reauthorizer.handle(query) })
            }
            services.append(listener("callback", address, routes))
        }
        if context.configuration.metrics.listen != nil {
            let sampler = FleetSampler(
                interval: .seconds(10), clock: clock, logger: Logger(label: "tokenkeeper.metrics"),
                waitUntilReady: { await status.waitUntilReady() },
                read: { now in
                    FleetSample(
                        figures: try await store.fleetFigures(reauthHorizon: now + configuration.notify.reauthWarning),
                        byApp: try await store.statusCounts(), deliveries: try await store.deliveryCounts(), at: now)
                })
            services.append(.init(service: sampler, successTerminationBehavior: .ignore, serviceName: "fleet sampler"))
            if let listener = try metricsListener(metrics: metrics, status: status, clock: clock, sampler: sampler) {
                services.append(listener)
            }
        }
        return services
    }

    /// `metrics.listen`: `/metrics` (the fleet's figures from `sampler`,
    /// never read from the store by a scrape), `/healthz` and `/readyz`;
    /// nil when not configured.
    func metricsListener(
        metrics: DaemonMetrics, status: DaemonStatus, clock: any WallClock, sampler: FleetSampler
    ) throws(CommandFailure) -> ServiceGroupConfiguration.ServiceConfiguration? {
        guard let listen = context.configuration.metrics.listen else { return nil }
        let address = try Self.address(listen, key: "metrics.listen")
        let routes = [
            HTTPRoute(path: "/metrics") { _ in
                HTTPReply(
                    status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                    body: metrics.render(fleet: sampler.current(), health: status.health, now: clock.now()))
            },
            HTTPRoute(path: "/healthz") { _ in .page(200, "ok") },
            HTTPRoute(path: "/readyz") { _ in
                let health = status.health
                if !health.isReady { return .page(503, "not ready: the schedule is not loaded") }
                if !health.holdingBack.isEmpty {
                    return .page(503, "degraded: " + health.holdingBack.values.sorted().joined(separator: "; "))
                }
                return .page(200, "ready")
            },
        ]
        return listener("metrics", address, routes)
    }

    private static func address(_ text: String, key: String) throws(CommandFailure) -> ListenAddress {
        do {
            return try ListenAddress(text, key: key)
        } catch {
            throw CommandFailure(.configuration, error.description)
        }
    }

    /// The signing proxy's listener (`proxy.listen`).
    func proxyListener(_ setup: ProxySetup) -> ServiceGroupConfiguration.ServiceConfiguration {
        let settings = context.configuration.proxy
        let address: HTTPListener.Address =
            switch setup.address {
            case .tcp(let tcp): .tcp(host: tcp.host, port: tcp.port)
            case .unix(let path): .unix(path: path, mode: settings.socketMode, group: settings.socketGroup)
            }
        let router = HTTPListener.forwardingRouter(
            maxBodyBytes: settings.maxRequestBytes, maxConcurrent: settings.maxConcurrentCalls,
            refuse: { kind, path in
                switch kind {
                case .bodyTooLarge: setup.proxy.refuseBeforeReading(.tooLarge, path: path)
                case .urlTooLong: setup.proxy.refuseBeforeReading(.uriTooLong, path: path)
                case .busy: setup.proxy.refuseBeforeReading(.busy, path: path)
                }
            },
            handle: { await setup.proxy.handle($0) })
        return listener("proxy", address, router: router)
    }

    /// A listener whose failure (a port in use) is logged and leaves
    /// refreshing running: tokens matter more than a page.
    private func listener(_ name: String, _ address: ListenAddress, _ routes: [HTTPRoute])
        -> ServiceGroupConfiguration.ServiceConfiguration
    {
        listener(name, .tcp(host: address.host, port: address.port), router: HTTPListener.router(routes))
    }

    private func listener(_ name: String, _ address: HTTPListener.Address, router: Router<BasicRequestContext>)
        -> ServiceGroupConfiguration.ServiceConfiguration
    {
        let logger = Logger(label: "tokenkeeper.\(name)")
        let configuration = context.configuration
        let listeners = [configuration.callback.listen, configuration.metrics.listen, configuration.proxy.listen]
            .compactMap { $0 }.count
        let softLimit = OpenFileLimit.raise()
        let limits = HTTPListener.Limits(
            maxConnections: OpenFileLimit.connectionCap(softLimit: softLimit, listeners: listeners))
        logger.info(
            "\(name) listener limits",
            metadata: [
                "max_connections": "\(limits.maxConnections)", "open_files": "\(softLimit)",
                "request_deadline": "\(limits.requestDeadline)",
            ])
        let service = HTTPListener.make(name: name, address: address, router: router, limits: limits, logger: logger)
        return .init(
            service: GuardedService(name: "\(name) listener on \(address)", service: service, logger: logger),
            successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: name)
    }
}

/// Runs a service and logs its failure instead of passing it on.
struct GuardedService<Inner: Service>: Service {
    let name: String
    let service: Inner
    let logger: Logger

    func run() async throws {
        do {
            try await service.run()
        } catch {
            logger.error("\(name) stopped; refreshing goes on without it", metadata: ["error": "\(error)"])
        }
    }
}
