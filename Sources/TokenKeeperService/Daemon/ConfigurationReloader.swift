import IOPGateway
import Logging
import RefreshScheduler
import ServiceLifecycle
import TokenKeeperCore
import UnixSignals

/// SIGHUP: reads the configuration and the apps' secrets again, hands the
/// gateways and the scheduler their new settings (an app added gets its
/// gateway, an app removed loses it: refused while it still has sellers) and
/// retries the accounts held back at once. `storage.*`, `log.*`, `notify.*`,
/// `callback.*`, `metrics.*` and the apps' `redirect_uri` need a restart.
struct ConfigurationReloader: Service {
    /// The configuration the daemon started with.
    let running: TokenKeeperConfiguration
    /// The scheduler's lease owner, which a reload keeps.
    let leaseOwner: String
    let configPath: String?
    let environment: [String: String]
    let clients: GatewayClients
    let store: any ManagedAccountStore
    let metrics: DaemonMetrics
    let scheduler: RefreshScheduler
    let notifier: SystemdNotifier
    let logger: Logger
    /// Turns the reloaded scheduler settings into this node's (on
    /// PostgreSQL: its share of the call rate).
    var adjust: @Sendable (RefreshSchedulerConfiguration) -> RefreshSchedulerConfiguration = { $0 }
    /// The signing proxy, whose clients and apps a reload replaces.
    var proxy: ProxySetup?

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            await reload()
        }
    }

    func reload() async {
        notifier.reloading()
        defer { notifier.send(["READY=1"]) }
        logger.notice("SIGHUP: reloading the configuration and the apps' secrets")
        switch CommandContext.load(configPath: configPath, environment: environment) {
        case .failure(let failure):
            logger.error("reload refused; keeping the running configuration", metadata: ["error": "\(failure.message)"])
        case .success(let context):
            do throws(CommandFailure) {
                let settings = try context.gatewayConfigurations()
                try await refuseRemovingAppsWithSellers(keeping: Set(settings.keys))
                let preparedProxy = try proxy?.prepare(context)
                clients.update(settings) { configuration in
                    var logger = Logger(label: "tokenkeeper.gateway")
                    logger[metadataKey: "app_key"] = "\(configuration.appKey)"
                    return IOPGatewayClient(configuration: configuration, clock: context.wallClock, logger: logger)
                }
                for (app, configuration) in settings.sorted(by: { $0.key < $1.key }) {
                    logger.notice(
                        "reloaded gateway settings and app secret",
                        metadata: [
                            "app": "\(app)", "app_secret": "\(configuration.appSecret.fingerprint)",
                            "app_key": "\(configuration.appKey)",
                        ])
                }
                let proxyClients = preparedProxy.flatMap { proxy?.apply($0) }
                await scheduler.update(gateways: clients.instrumented(metrics: metrics))
                let reloaded = context.configuration
                if let proxyClients {
                    logger.notice(
                        "reloaded the proxy's clients", metadata: ["clients": "\(proxyClients.joined(separator: ","))"])
                }
                await scheduler.update(
                    configuration: adjust(
                        reloaded.schedulerConfiguration(leaseOwner: leaseOwner, environment: environment)))
                // The notifier's channels, the listeners and the links they
                // make are built once at start.
                let needRestart = [
                    ("storage.*", reloaded.storage != running.storage), ("log.*", reloaded.log != running.log),
                    ("notify.*", reloaded.notify != running.notify),
                    ("callback.*", reloaded.callback != running.callback),
                    ("metrics.*", reloaded.metrics != running.metrics),
                    ("proxy.listen", reloaded.proxy.listen != running.proxy.listen),
                    (
                        "proxy.socket_*",
                        [
                            reloaded.proxy.socketMode != running.proxy.socketMode,
                            reloaded.proxy.socketGroup != running.proxy.socketGroup,
                        ].contains(true)
                    ),
                    (
                        "redirect_uri",
                        reloaded.apps.map { [$0.name.rawValue, $0.redirectURI ?? ""] }
                            != running.apps.map { [$0.name.rawValue, $0.redirectURI ?? ""] }
                    ),
                ].filter(\.1).map(\.0)
                if !needRestart.isEmpty {
                    logger.warning(
                        "these changes take effect at the next restart (systemctl restart tokenkeeper)",
                        metadata: ["keys": "\(needRestart.joined(separator: ", "))"])
                }
                await scheduler.retryHeldBack()
            } catch {
                logger.error(
                    "reload refused; keeping the running configuration", metadata: ["error": "\(error.message)"])
            }
        }
    }

    /// Refuses a reload that drops an app whose sellers are still stored:
    /// they would never be refreshed again (and their tokens expire) while
    /// nobody is told. The operator removes them first, or keeps the app.
    private func refuseRemovingAppsWithSellers(keeping kept: Set<AppName>) async throws(CommandFailure) {
        let removed = clients.apps.subtracting(kept)
        guard !removed.isEmpty else { return }
        let counts = try await storeCall("counting the sellers of the apps removed") { try await store.statusCounts() }
        let held = removed.sorted().compactMap { app -> String? in
            let sellers = counts[app]?.values.reduce(0, +) ?? 0
            return sellers > 0 ? "\(app) (\(sellers) sellers)" : nil
        }
        guard held.isEmpty else {
            throw CommandFailure(
                .configuration,
                "apps removed from the configuration still have sellers: \(held.joined(separator: ", ")); "
                    + "keep them, or remove their sellers first ('tokenkeeper list --app NAME', "
                    + "'tokenkeeper remove --app NAME SELLER')")
        }
    }
}
