#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import IOPGateway
import Logging
import RefreshScheduler
import SQLiteStore
import ServiceLifecycle
import Synchronization
import TokenKeeperCore
import UnixSignals

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

/// The daemon: the lock on the storage directory, the store, the gateway
/// client and the scheduler, run under swift-service-lifecycle. SIGTERM and
/// SIGINT stop it gracefully; SIGHUP reloads the configuration and the secret.
struct Daemon {
    let context: CommandContext
    let configPath: String?
    var logger = Logger(label: "tokenkeeper")
    /// Called with every scheduler event after the daemon's own handling (demo).
    var observer: @Sendable (SchedulerEvent) -> Void = { _ in }
    /// More services to run beside the scheduler (demo), given the open store.
    var extraServices: @Sendable (SQLiteAccountStore) -> [ServiceGroupConfiguration.ServiceConfiguration] = { _ in [] }
    var leaseOwner = CommandContext.leaseOwner(role: "daemon")

    func run() async throws(CommandFailure) -> CommandOutcome {
        let configuration = context.configuration
        if configuration.storage.backend == .postgres { return try await runOnPostgres() }
        let client = try context.gatewayClient(logger: Logger(label: "tokenkeeper.gateway"))
        let directory = configuration.storage.directory
        let lock: StorageLock
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            lock = try StorageLock(directory: directory)
        } catch let error as StorageLock.HeldElsewhere {
            await client.shutdown()
            throw CommandFailure(.failure, error.description)
        } catch {
            await client.shutdown()
            throw CommandFailure(
                .configuration,
                ConfigurationError(key: "storage.directory", problem: "cannot be used: \(error)").description)
        }
        let store: SQLiteAccountStore
        do {
            // tokens.db is checked against keeper.db after start (ReadersCheck), not before READY.
            store = try await context.openStore(logger: Logger(label: "tokenkeeper.store"), checkReadersAtOpen: false)
        } catch {
            await client.shutdown()
            throw error
        }
        let outcome: CommandOutcome
        do {
            outcome = try await run(store: store, client: client)
        } catch {
            try? await store.close()
            await client.shutdown()
            throw error
        }
        try? await store.close()
        await client.shutdown()
        withExtendedLifetime(lock) {}
        return outcome
    }

    private func run(store: SQLiteAccountStore, client: IOPGatewayClient) async throws(CommandFailure) -> CommandOutcome {
        let configuration = context.configuration
        let clock = context.wallClock
        let notifier = SystemdNotifier(environment: context.environment)
        let schedulerSettings = configuration.schedulerConfiguration(
            leaseOwner: leaseOwner, environment: context.environment)
        let status = DaemonStatus(notifier: notifier)
        // Counted once the schedule is loaded: a full scan at a million
        // sellers, which READY need not wait for.
        Task {
            await status.waitUntilReady()
            status.reauthRequired = (try? await store.countReauthRequired()) ?? 0
        }
        let metrics = DaemonMetrics()
        let gateway = InstrumentedGateway(gateway: client, metrics: metrics)
        // The state key is read once: events and the callback sign with it.
        let links = try await authorizationLinks(store: store, clock: clock)
        let events = try eventNotifier(store: store, links: links, clock: clock, metrics: metrics)
        status.setChannels(events.channelNames)
        let observer = self.observer
        let scheduler = RefreshScheduler(
            store: store, gateway: gateway, clock: clock, configuration: schedulerSettings,
            logger: Logger(label: "tokenkeeper.scheduler"),
            onEvent: { [logger = self.logger] event in
                status.handle(event)
                metrics.record(event)
                events.notifier.observe(event)
                if case .rotationUnstored(let sellerID, let grant) = event {
                    GrantSalvage.saveReporting(
                        grant, sellerID: sellerID, directory: configuration.storage.directory, logger: logger)
                }
                if case .tick = event, status.recountIsDue() {
                    // Re-authorizations by the CLI (`add --code`) lower the count too.
                    Task { status.reauthRequired = (try? await store.countReauthRequired()) ?? 0 }
                    ProcessMemory.returnFreedMemory()
                }
                observer(event)
            })
        let reloader = ConfigurationReloader(
            running: configuration, leaseOwner: leaseOwner, configPath: configPath,
            environment: context.environment, client: client, scheduler: scheduler, notifier: notifier, logger: logger)
        var services = coreServices(scheduler: scheduler, notifier: notifier, reloader: reloader, pruning: store)
        services += [
            .init(service: events.notifier, successTerminationBehavior: .ignore, serviceName: "notifier"),
            .init(
                service: ReadersCheck(
                    store: store, logger: Logger(label: "tokenkeeper.store"),
                    waitUntilReady: { await status.waitUntilReady() }),
                successTerminationBehavior: .ignore, serviceName: "readers-check"),
        ]
        services += try listeners(
            store: store, gateway: gateway, links: links, clock: clock, metrics: metrics, status: status,
            onStored: { _ in events.notifier.nudge() })
        services += extraServices(store)
        return await runGroup(
            services, shutdownGrace: schedulerSettings.shutdownGracePeriod,
            storage: ["storage": "\(configuration.storage.directory)"])
    }

    /// The services every daemon runs, whatever the backend: the scheduler
    /// (whose end ends the group), the SIGHUP reloader, the event pruner.
    func coreServices(
        scheduler: RefreshScheduler, notifier: SystemdNotifier, reloader: ConfigurationReloader,
        pruning store: any PrunableStore
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
                "gateway": "\(configuration.gateway.url)",
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
