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
        await execute(configPath: configPath) { context throws(CommandFailure) in
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
    var leaseOwner = "daemon-\(ProcessInfo.processInfo.processIdentifier)"

    func run() async throws(CommandFailure) -> CommandOutcome {
        let configuration = context.configuration
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
            store = try await context.openStore(logger: Logger(label: "tokenkeeper.store"))
        } catch {
            await client.shutdown()
            throw error
        }
        let outcome = await run(store: store, client: client)
        try? await store.close()
        await client.shutdown()
        withExtendedLifetime(lock) {}
        return outcome
    }

    private func run(store: SQLiteAccountStore, client: IOPGatewayClient) async -> CommandOutcome {
        let configuration = context.configuration
        let notifier = SystemdNotifier(environment: context.environment)
        var schedulerSettings = configuration.schedulerConfiguration(leaseOwner: leaseOwner)
        if let watchdog = SystemdNotifier.watchdogInterval(environment: context.environment) {
            // WATCHDOG=1 goes out from the scheduler's own tick: at least twice per interval.
            schedulerSettings.tickInterval = min(schedulerSettings.tickInterval, watchdog / 2)
        }
        let status = DaemonStatus(notifier: notifier, logger: logger)
        status.reauthRequired = (try? await store.countByStatus()[.reauthRequired]) ?? 0
        let observer = self.observer
        let scheduler = RefreshScheduler(
            store: store, gateway: client, configuration: schedulerSettings,
            logger: Logger(label: "tokenkeeper.scheduler"),
            onEvent: { event in
                status.handle(event)
                observer(event)
            })
        let reloader = ConfigurationReloader(
            configPath: configPath, environment: context.environment, client: client, scheduler: scheduler,
            notifier: notifier, logger: logger)
        let services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(
                service: SchedulerService(scheduler: scheduler, notifier: notifier),
                successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "scheduler"),
            .init(service: reloader, successTerminationBehavior: .ignore, serviceName: "reloader"),
        ] + extraServices(store)
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = schedulerSettings.shutdownGracePeriod + .seconds(5)
        logger.notice(
            "tokenkeeper \(TokenKeeperVersion.current) starting",
            metadata: [
                "storage": "\(configuration.storage.directory)", "gateway": "\(configuration.gateway.url)",
                "config": "\(configuration.sourcePath ?? "environment only")",
            ])
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
        } catch {
            logger.error("the daemon stopped on an error", metadata: ["error": "\(error)"])
            return .failure
        }
        return .success
    }
}

/// Runs the scheduler; graceful shutdown asks it to finish what is in flight.
struct SchedulerService: Service {
    let scheduler: RefreshScheduler
    let notifier: SystemdNotifier

    func run() async throws {
        let scheduler = self.scheduler
        let notifier = self.notifier
        try await withGracefulShutdownHandler {
            try await scheduler.run()
        } onGracefulShutdown: {
            notifier.stopping()
            Task { await scheduler.stop() }
        }
    }
}

/// SIGHUP: reads the configuration and the app secret again, hands the
/// gateway its new settings and retries the accounts held back at once.
struct ConfigurationReloader: Service {
    let configPath: String?
    let environment: [String: String]
    let client: IOPGatewayClient
    let scheduler: RefreshScheduler
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            await reload()
        }
    }

    func reload() async {
        notifier.reloading()
        defer { notifier.send(["READY=1"]) }
        logger.notice("SIGHUP: reloading the configuration and the app secret")
        switch CommandContext.load(configPath: configPath, environment: environment) {
        case .failure(let failure):
            logger.error("reload refused; keeping the running configuration", metadata: ["error": "\(failure.message)"])
        case .success(let context):
            do throws(CommandFailure) {
                let settings = try context.gatewayConfiguration()
                do throws(GatewayFailure) {
                    try settings.validate()
                } catch {
                    throw CommandFailure(.configuration, "gateway: \(error.message)")
                }
                client.update(configuration: settings)
                logger.notice(
                    "reloaded gateway settings and app secret",
                    metadata: ["app_secret": "\(settings.appSecret.fingerprint)", "app_key": "\(settings.appKey)"])
                await scheduler.retryHeldBack()
            } catch {
                logger.error("reload refused; keeping the running configuration", metadata: ["error": "\(error.message)"])
            }
        }
    }
}

/// Turns scheduler events into systemd notifications: READY=1, WATCHDOG=1
/// from the scheduler's own tick, and a STATUS= line.
final class DaemonStatus: Sendable {
    private struct State {
        var reauthRequired = 0
        var degraded: String?
    }
    private let state = Mutex(State())
    let notifier: SystemdNotifier
    let logger: Logger

    init(notifier: SystemdNotifier, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
    }

    var reauthRequired: Int {
        get { state.withLock { $0.reauthRequired } }
        set { state.withLock { $0.reauthRequired = newValue } }
    }

    func handle(_ event: SchedulerEvent) {
        switch event {
        case .ready(let snapshot):
            notifier.ready(status: line(snapshot))
        case .tick(let snapshot):
            notifier.watchdog()
            notifier.status(line(snapshot))
        case .reauthRequired:
            state.withLock { $0.reauthRequired += 1 }
        case .degraded(let reason):
            state.withLock { $0.degraded = Self.describe(reason) }
        case .recovered:
            state.withLock { $0.degraded = nil }
        case .stopped(let snapshot):
            notifier.status("stopped; " + line(snapshot))
        case .refreshed, .failed:
            break
        }
    }

    func line(_ snapshot: SchedulerSnapshot) -> String {
        let (reauth, degraded) = state.withLock { ($0.reauthRequired, $0.degraded) }
        var text = "\(snapshot.scheduled) sellers scheduled, \(reauth) need re-authorization, "
            + "next refresh \(snapshot.nextDue.map { "\($0)" } ?? "none"), \(snapshot.refreshed) refreshed"
        if let paused = snapshot.pausedUntil { text += ", throttled until \(paused)" }
        if let degraded { text = "DEGRADED: \(degraded); " + text }
        return text
    }

    static func describe(_ reason: DegradedReason) -> String {
        switch reason {
        case .configuration(let failure):
            "the gateway rejects our configuration (\(failure.code)): fix it, then send SIGHUP (systemctl reload tokenkeeper)"
        case .storage(let message):
            "storage failing: \(message)"
        }
    }
}
