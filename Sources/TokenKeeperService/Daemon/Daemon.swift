import Foundation
import IOPGateway
import Logging
import RefreshScheduler
import ServiceLifecycle
import Synchronization
import TokenKeeperCore
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Commands {
    /// `tokenkeeper run`: the daemon, in the foreground.
    public static func run(configPath: String?) async -> CommandOutcome {
        ProcessMemory.limitArenas()
        return await execute(configPath: configPath) { context throws(CommandFailure) in
            LogSetup.bootstrapOnce(level: context.configuration.logLevel, environment: context.environment)
            let daemon = Daemon(context: context, configPath: configPath)
            return try await daemon.run()
        }
    }
}

/// The daemon: the store (on SQLite with the lock on the storage
/// directory), the gateway client and the scheduler, run under
/// swift-service-lifecycle, the same on every backend. SIGTERM and SIGINT
/// stop it gracefully; SIGHUP reloads the configuration and the secret.
struct Daemon {
    let context: CommandContext
    let configPath: String?
    var logger = Logger(label: "tokenkeeper")
    /// Called with every scheduler event after the daemon's own handling (demo).
    var observer: @Sendable (SchedulerEvent) -> Void = { _ in }
    /// More services to run beside the scheduler (demo), given the open store.
    var extraServices: @Sendable (any OperatorStore) -> [ServiceGroupConfiguration.ServiceConfiguration] = { _ in [] }
    var leaseOwner = CommandContext.leaseOwner(role: "daemon")

    func run() async throws(CommandFailure) -> CommandOutcome {
        let clients = GatewayClients(try context.gatewayClients(logger: Logger(label: "tokenkeeper.gateway")))
        let opened: OpenedStore
        do {
            opened = try await context.openConfiguredStore(.daemon(leaseOwner: leaseOwner))
        } catch {
            await clients.shutdown()
            throw error
        }
        let outcome: CommandOutcome
        do {
            outcome = try await run(opened, clients: clients)
        } catch {
            await finish(opened, clients: clients)
            throw error
        }
        await finish(opened, clients: clients)
        return outcome
    }

    /// The last steps of a stop, each logged: what is stored is already
    /// durable, so an HTTP client that does not close in time is left to the
    /// process's exit rather than holding the stop (systemd's stop timeout).
    private func finish(_ opened: OpenedStore, clients: GatewayClients) async {
        logger.info("the services have stopped; closing the store")
        await opened.close()
        logger.info("the store is closed; closing the gateway connections")
        let closed = await Bounded.within(.seconds(5)) { await clients.shutdown() }
        if !closed { logger.warning("the gateway connections did not close within 5 s; exiting without them") }
        logger.notice("tokenkeeper stopped")
    }

    private func run(_ opened: OpenedStore, clients: GatewayClients) async throws(CommandFailure) -> CommandOutcome {
        let store = opened.store
        let configuration = context.configuration
        let clock = context.wallClock
        let notifier = SystemdNotifier(environment: context.environment)
        // This node's share of refresh.max_calls_per_second: all of it
        // unless several daemons share the store.
        let share = RateShare(
            base: configuration.schedulerConfiguration(leaseOwner: leaseOwner, environment: context.environment),
            reservedForCallback: configuration.callback.listen == nil ? 0 : ExchangeBudget.share)
        let schedulerSettings = share.current
        let status = DaemonStatus(notifier: notifier)
        // Room for saving rotated pairs on a full disk, and the pairs saved
        // at the last stop stored before anything is refreshed.
        let directory = configuration.storage.directory
        try? FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        GrantSalvage.reserveSpace(directory: directory, logger: logger)
        await GrantSalvage.recover(into: store, directory: directory, now: clock.now(), logger: logger)
        // Counted once the schedule is loaded: a full scan at a million
        // sellers, which READY need not wait for.
        Task {
            await status.waitUntilReady()
            status.reauthRequired = (try? await store.countReauthRequired()) ?? 0
        }
        let metrics = DaemonMetrics(apps: configuration.apps.map(\.name))
        let gateways = clients.instrumented(metrics: metrics)
        // The state key is read once: events and the callback sign with it.
        let links = try await authorizationLinks(store: store, clock: clock)
        let events = try eventNotifier(store: store, links: links, clock: clock, metrics: metrics)
        status.setChannels(events.channelNames)
        let observer = self.observer
        let scheduler = RefreshScheduler(
            store: store, gateways: gateways, clock: clock, configuration: schedulerSettings,
            callBudgets: CallBudgets(proxyShare: 1 - configuration.proxy.refreshShare),
            logger: Logger(label: "tokenkeeper.scheduler"),
            onEvent: { [logger = self.logger] event in
                status.handle(event)
                metrics.record(event)
                events.notifier.observe(event)
                if case .rotationUnstored(let account, let grant, let sent) = event {
                    GrantSalvage.saveReporting(
                        grant, account: account, replacing: sent, directory: configuration.storage.directory,
                        logger: logger)
                }
                if case .tick = event, status.recountIsDue() {
                    // Re-authorizations by the CLI (`add --code`) lower the count too.
                    Task { status.reauthRequired = (try? await store.countReauthRequired()) ?? 0 }
                    ProcessMemory.returnFreedMemory()
                }
                observer(event)
            })
        let proxy = try ProxySetup.make(
            context: context, store: store, scheduler: scheduler, metrics: metrics, liveNodes: { share.liveNodes },
            rate: { share.callsPerSecond(for: $0) })
        var reloader = ConfigurationReloader(
            running: configuration, leaseOwner: leaseOwner, configPath: configPath,
            environment: context.environment, clients: clients, store: store, metrics: metrics, scheduler: scheduler,
            notifier: notifier, logger: logger)
        reloader.adjust = { share.adjusted(base: $0) }
        reloader.proxy = proxy
        var services = coreServices(scheduler: scheduler, notifier: notifier, reloader: reloader, pruning: store)
        services.append(.init(service: events.notifier, successTerminationBehavior: .ignore, serviceName: "notifier"))
        services += opened.backgroundServices(
            StoreHooks(
                waitUntilReady: { await status.waitUntilReady() },
                liveNodesChanged: { [logger = self.logger] live in
                    metrics.recordLiveNodes(live)
                    guard let settings = share.set(liveNodes: live) else { return }
                    logger.notice(
                        "live nodes changed; this node's share of the call rate",
                        metadata: [
                            "live_nodes": "\(live)",
                            "max_calls_per_second": "\(settings.maxCallsPerSecond.map { "\($0)" } ?? "unlimited")",
                        ])
                    Task { await scheduler.update(configuration: settings) }
                }))
        services += try listeners(
            store: store, gateways: gateways, links: links, clock: clock, metrics: metrics, status: status,
            exchangeRate: { share.callbackRate(for: $0) }, onStored: { _ in events.notifier.nudge() })
        if let proxy { services.append(proxyListener(proxy)) }
        services += extraServices(store)
        let outcome = await runGroup(
            services, shutdownGrace: schedulerSettings.shutdownGracePeriod, storage: opened.startingMetadata)
        proxy?.daily?.flush()
        if let proxy, !(await Bounded.within(.seconds(5), { await proxy.forwarder.shutdown() })) {
            logger.warning("the proxy's gateway connections did not close within 5 s; exiting without them")
        }
        return outcome
    }

    /// The services every daemon runs, whatever the backend: the scheduler
    /// (whose end ends the group), the SIGHUP reloader, the event pruner.
    func coreServices(
        scheduler: RefreshScheduler, notifier: SystemdNotifier, reloader: ConfigurationReloader,
        pruning store: any FleetReporting
    ) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        [
            .init(
                service: SchedulerService(scheduler: scheduler, notifier: notifier),
                successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "scheduler"),
            .init(service: reloader, successTerminationBehavior: .ignore, serviceName: "reloader"),
            .init(
                service: EventPruner(
                    store: store,
                    retention: .milliseconds(Int64(context.configuration.storage.eventRetentionDays * 86_400_000)),
                    logger: Logger(label: "tokenkeeper.pruner")),
                successTerminationBehavior: .ignore, serviceName: "event-pruner"),
        ]
    }

    /// Runs the daemon's services until SIGTERM or SIGINT (or the scheduler
    /// ends), after the starting line with `storage` in its metadata.
    func runGroup(
        _ services: [ServiceGroupConfiguration.ServiceConfiguration], shutdownGrace: Duration,
        storage: Logger.Metadata
    ) async -> CommandOutcome {
        let configuration = context.configuration
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // The scheduler's own grace (above the request timeout) bounds the
        // wait for calls in flight; this is the service group's outer limit,
        // and systemd's TimeoutStopSec the last word.
        groupConfiguration.maximumGracefulShutdownDuration = shutdownGrace + .seconds(15)
        logger.notice(
            "tokenkeeper \(TokenKeeperVersion.current) starting",
            metadata: storage.merging([
                "gateway": "\(Set(configuration.apps.map(\.gateway.url)).sorted().joined(separator: ", "))",
                "apps": "\(configuration.apps.map(\.name.rawValue).joined(separator: ","))",
                "config": "\(configuration.sourcePath ?? "environment only")",
            ]) { $1 })
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
        } catch {
            logger.error("the daemon stopped on an error", metadata: ["error": "\(error)"])
            return .failure
        }
        return .success
    }
}
