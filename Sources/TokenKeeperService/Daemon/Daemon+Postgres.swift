import Foundation
import IOPGateway
import Logging
import PostgresStore
import RefreshScheduler
import SQLiteStore
import ServiceLifecycle
import Synchronization
import TokenKeeperCore
import UnixSignals

/// The daemon on PostgreSQL (`storage.backend: postgres`): one of several
/// nodes on one schema. No lock file (the nodes share the work by design);
/// the scheduler is the same, over ``PostgresAccountStore``; a cluster service
/// keeps the heartbeat and the LISTEN, and gives the scheduler this node's
/// share of `refresh.max_calls_per_second`.
extension Daemon {
    func runOnPostgres() async throws(CommandFailure) -> CommandOutcome {
        let configuration = context.configuration
        try Self.refuseWhatPostgresLacks(configuration)
        let client = try context.gatewayClient(logger: Logger(label: "tokenkeeper.gateway"))
        let store: PostgresAccountStore
        do {
            store = try await context.openPostgresStore(logger: Self.postgresLogger(level: configuration.logLevel))
        } catch {
            await client.shutdown()
            throw error
        }
        let outcome: CommandOutcome
        do {
            outcome = try await runOnPostgres(store: store, client: client)
        } catch {
            store.close()
            await client.shutdown()
            throw error
        }
        store.close()
        await client.shutdown()
        return outcome
    }

    /// postgres-nio's own logging is kept to warnings: at debug it would
    /// print the statements' values, which hold tokens.
    static func postgresLogger(level: Logger.Level) -> Logger {
        var logger = Logger(label: "tokenkeeper.store")
        logger.logLevel = max(level, .info)
        return logger
    }

    static func refuseWhatPostgresLacks(_ configuration: TokenKeeperConfiguration) throws(CommandFailure) {
        let unsupported = [
            ("notify.command", configuration.notify.command != nil),
            ("notify.webhook_url", configuration.notify.webhookURL != nil),
            ("callback.listen", configuration.callback.listen != nil),
        ].filter(\.1).map(\.0)
        guard unsupported.isEmpty else {
            throw CommandFailure(
                .configuration,
                "configuration error: \(unsupported.joined(separator: ", ")): not available yet with "
                    + "storage.backend postgres (events are in the schema's events table); "
                    + "remove \(unsupported.count == 1 ? "it" : "them") or use storage.backend sqlite")
        }
    }

    private func runOnPostgres(store: PostgresAccountStore, client: IOPGatewayClient) async throws(CommandFailure)
        -> CommandOutcome
    {
        let configuration = context.configuration
        let clock = context.wallClock
        let notifier = SystemdNotifier(environment: context.environment)
        let fullSettings = configuration.schedulerConfiguration(leaseOwner: leaseOwner, environment: context.environment)
        let share = RateShare(base: fullSettings)
        let status = DaemonStatus(notifier: notifier)
        let metrics = DaemonMetrics()
        let observer = self.observer
        let scheduler = RefreshScheduler(
            store: store, gateway: InstrumentedGateway(gateway: client, metrics: metrics), clock: clock,
            configuration: share.current, logger: Logger(label: "tokenkeeper.scheduler"),
            onEvent: { [logger = self.logger] event in
                status.handle(event)
                metrics.record(event)
                if case .rotationUnstored(let sellerID, let grant) = event {
                    GrantSalvage.saveReporting(
                        grant, sellerID: sellerID, directory: configuration.storage.directory, logger: logger)
                }
                observer(event)
            })
        var reloader = ConfigurationReloader(
            running: configuration, leaseOwner: leaseOwner, configPath: configPath,
            environment: context.environment, client: client, scheduler: scheduler, notifier: notifier, logger: logger)
        reloader.adjust = { share.adjusted(base: $0) }
        let postgres = configuration.storage.postgres
        let cluster = ClusterService(
            store: store, node: leaseOwner, host: ProcessInfo.processInfo.hostName,
            pid: ProcessInfo.processInfo.processIdentifier,
            heartbeat: .milliseconds(Int64(postgres.heartbeatSeconds * 1000)),
            takeover: .milliseconds(Int64(postgres.takeoverSeconds * 1000)),
            onLiveNodes: { [logger = self.logger] live in
                metrics.recordLiveNodes(live)
                guard let settings = share.set(liveNodes: live) else { return }
                logger.notice(
                    "live nodes changed; this node's share of the call rate",
                    metadata: [
                        "live_nodes": "\(live)",
                        "max_calls_per_second": "\(settings.maxCallsPerSecond.map { "\($0)" } ?? "unlimited")",
                    ])
                Task { await scheduler.update(configuration: settings) }
            })
        var services = coreServices(scheduler: scheduler, notifier: notifier, reloader: reloader, pruning: store)
        services.append(.init(service: cluster, successTerminationBehavior: .ignore, serviceName: "cluster"))
        // The same /metrics, /healthz and /readyz as on SQLite; the fleet's
        // figures from the schema (no notification channels here).
        let warning = configuration.notify.reauthWarning
        if let listener = try metricsListener(
            metrics: metrics, status: status, clock: clock,
            figures: { now in
                let fleet = try await store.fleet(now: now, reauthHorizon: now + warning)
                return (
                    FleetFigures(
                        byStatus: fleet.counts, reauthDue: fleet.reauthDue, nextRefreshAt: fleet.nextRefresh,
                        earliestAccessExpiry: fleet.earliestExpiry),
                    [:]
                )
            })
        {
            services.append(listener)
        }
        return await runGroup(
            services, shutdownGrace: fullSettings.shutdownGracePeriod,
            storage: ["storage": "\(store.settings.displayURL) schema \(store.settings.schema)", "node": "\(leaseOwner)"])
    }
}

/// This node's part of the app's call rate: `refresh.max_calls_per_second`
/// is the vendor's limit for the app key, shared by every live node.
final class RateShare: Sendable {
    private struct State {
        var liveNodes = 1
        var base: RefreshSchedulerConfiguration
    }
    private let state: Mutex<State>

    init(base: RefreshSchedulerConfiguration) {
        state = Mutex(State(base: base))
    }

    /// This node's settings now.
    var current: RefreshSchedulerConfiguration {
        state.withLock { Self.share(of: $0.base, liveNodes: $0.liveNodes) }
    }

    /// Keeps `base` (reloaded settings) and returns this node's share of it.
    func adjusted(base: RefreshSchedulerConfiguration) -> RefreshSchedulerConfiguration {
        state.withLock { state in
            state.base = base
            return Self.share(of: base, liveNodes: state.liveNodes)
        }
    }

    /// This node's settings with `count` live nodes; nil when that is no change.
    func set(liveNodes count: Int) -> RefreshSchedulerConfiguration? {
        state.withLock { state in
            guard state.liveNodes != max(1, count) else { return nil }
            state.liveNodes = max(1, count)
            return Self.share(of: state.base, liveNodes: state.liveNodes)
        }
    }

    static func share(of settings: RefreshSchedulerConfiguration, liveNodes: Int) -> RefreshSchedulerConfiguration {
        var settings = settings
        settings.maxCallsPerSecond = settings.maxCallsPerSecond.map { $0 / Double(max(1, liveNodes)) }
        return settings
    }
}

/// The node's heartbeat and LISTEN, for as long as the daemon runs; it
/// leaves the nodes table on the way out.
struct ClusterService: Service {
    let store: PostgresAccountStore
    let node: String
    let host: String
    let pid: Int32
    let heartbeat: Duration
    let takeover: Duration
    let onLiveNodes: @Sendable (Int) -> Void

    func run() async throws {
        let task = Task {
            await store.runCluster(
                node: node, host: host, pid: pid, heartbeat: heartbeat, takeover: takeover, onLiveNodes: onLiveNodes)
        }
        await withGracefulShutdownHandler {
            await task.value
        } onGracefulShutdown: {
            task.cancel()
        }
    }
}
