import Foundation
import IOPGateway
import Logging
import RefreshScheduler
import SQLiteStore
import Synchronization
import TokenKeeperCore

extension CommandContext {
    /// Whether `storage.directory` holds a store (keeper.db) yet.
    var storeExists: Bool {
        FileManager.default.fileExists(atPath: configuration.storage.directory + "/keeper.db")
    }

    /// A lease owner unique across hosts, restarts and processes:
    /// `ROLE-PID@HOST/RANDOM`.
    static func leaseOwner(role: String) -> String {
        RefreshSchedulerConfiguration.uniqueLeaseOwner(
            role: role, pid: ProcessInfo.processInfo.processIdentifier, host: ProcessInfo.processInfo.hostName)
    }

    /// The gateway client of `app`, for commands that call the gateway; the
    /// settings are validated first so that a bad URL is a configuration error.
    func gatewayClient(for app: TokenKeeperConfiguration.AppSettings, logger: Logger) throws(CommandFailure)
        -> IOPGatewayClient
    {
        IOPGatewayClient(configuration: try validatedGatewayConfiguration(for: app), clock: wallClock, logger: logger)
    }

    /// A gateway client for every app (the daemon, `refresh`): each app's
    /// key and secret, each validated.
    func gatewayClients(logger: Logger) throws(CommandFailure) -> [AppName: IOPGatewayClient] {
        try gatewayConfigurations().mapValues { settings in
            var logger = logger
            logger[metadataKey: "app_key"] = "\(settings.appKey)"
            return IOPGatewayClient(configuration: settings, clock: wallClock, logger: logger)
        }
    }
}

/// Runs a store call; a thrown store error becomes a failure naming `action`.
func storeCall<T>(_ action: String, _ body: () async throws -> T) async throws(CommandFailure) -> T {
    do {
        return try await body()
    } catch let error as SQLiteStoreError {
        throw CommandFailure(.failure, "\(action): \(error)")
    } catch {
        throw CommandFailure(.failure, "\(action) failed: \(error)")
    }
}

extension TokenKeeperConfiguration {
    /// The scheduler's settings from the `refresh.*` keys.
    func schedulerConfiguration(leaseOwner: String)
        -> RefreshSchedulerConfiguration
    {
        // Leases and the stop's grace outlast the slowest app's calls.
        let timeoutSeconds = apps.map(\.gateway.timeoutSeconds).max() ?? gateway.timeoutSeconds
        return RefreshSchedulerConfiguration(
            policy: refreshPolicy,
            concurrency: refresh.concurrency,
            maxCallsPerSecond: refresh.maxCallsPerSecond,
            maxCallsPerSecondByApp: apps.reduce(into: [:]) { rates, app in rates[app.name] = app.maxCallsPerSecond },
            leaseOwner: leaseOwner,
            leaseDuration: RefreshSchedulerConfiguration.leaseDuration(
                requestTimeout: .milliseconds(Int64(timeoutSeconds * 1000))),
            tickInterval: .milliseconds(Int64(refresh.changePollSeconds * 1000)),
            configurationProbeInterval: .milliseconds(Int64(refresh.configurationProbeSeconds * 1000)),
            shutdownGracePeriod: .milliseconds(
                Int64(refresh.effectiveShutdownGraceSeconds(timeout: timeoutSeconds) * 1000)),
            massRejection: MassRejectionPolicy(
                sellers: refresh.massRejectionSellers, fraction: refresh.massRejectionFraction,
                hold: .milliseconds(Int64(refresh.massRejectionHoldHours * 3_600_000))))
    }

    /// The daemon's scheduler settings: those of ``schedulerConfiguration(leaseOwner:)``
    /// with a tick at least twice per systemd watchdog interval, because
    /// WATCHDOG=1 goes out from the scheduler's own tick.
    func schedulerConfiguration(leaseOwner: String, environment: [String: String]) -> RefreshSchedulerConfiguration {
        var settings = schedulerConfiguration(leaseOwner: leaseOwner)
        if let watchdog = SystemdNotifier.watchdogInterval(environment: environment) {
            settings.tickInterval = min(settings.tickInterval, watchdog / 2)
        }
        return settings
    }

    var logLevel: Logger.Level {
        Logger.Level(rawValue: log.level) ?? .info
    }
}

/// Installs the process's log handler once (`LoggingSystem.bootstrap` may run
/// only once; tests run several commands in one process).
enum LogSetup {
    private static let done = Mutex(false)

    static func bootstrapOnce(level: Logger.Level, environment: [String: String]) {
        let first = done.withLock { done in
            defer { done = true }
            return !done
        }
        if first { JournalLogHandler.bootstrap(level: level, environment: environment) }
    }
}

/// The file `migrate --to postgres` leaves beside keeper.db once the copy is
/// verified, so that nothing refreshes from keeper.db again (its refresh
/// tokens go stale as the PostgreSQL nodes rotate them).
enum MigrationMarker {
    static func path(directory: String) -> String { directory + "/migrated-to-postgres" }

    static func read(directory: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path(directory: directory)) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "migrated" : text
    }

    static func write(directory: String, note: String) throws {
        guard
            FileManager.default.createFile(
                atPath: path(directory: directory), contents: Data((note + "\n").utf8),
                attributes: [.posixPermissions: 0o640])
        else { throw CocoaError(.fileWriteUnknown) }
    }
}
