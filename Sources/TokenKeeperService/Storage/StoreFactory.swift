import Foundation
import Logging
import PostgresStore
import SQLiteStore
import ServiceLifecycle
import TokenKeeperCore

/// The one place that knows the backends: `storage.backend` is read here and
/// nowhere else, and only here are the concrete stores named. Everything else
/// — the daemon, the commands, the notifier, the callback — holds an
/// `any OperatorStore` (TokenKeeperCore) and what ``OpenedStore`` says the
/// backend runs beside it.
extension CommandContext {
    /// Why the store is opened.
    enum StorePurpose {
        /// A command: `creating` an empty store is allowed (enrolling
        /// commands); `checkReaders` compares tokens.db with keeper.db at
        /// open (SQLite), which commands that only read need not wait for.
        case command(creating: Bool = false, checkReaders: Bool = true)
        /// The daemon, whose refreshes lease sellers as `leaseOwner`. On
        /// SQLite it holds the storage directory's lock for its lifetime.
        case daemon(leaseOwner: String)

        var isDaemon: Bool {
            if case .daemon = self { true } else { false }
        }
    }

    /// Opens the configured store for `purpose`.
    func openConfiguredStore(_ purpose: StorePurpose, logger: Logger = Logger(label: "tokenkeeper.store"))
        async throws(CommandFailure) -> OpenedStore
    {
        switch configuration.storage.backend {
        case .sqlite: return try await openSQLite(purpose, logger: logger)
        case .postgres: return try await openPostgres(purpose, logger: logger)
        }
    }

    /// Whether the configured store may hold sellers: keeper.db exists, or
    /// the backend is PostgreSQL (whose schema is made on first open).
    var configuredStoreExists: Bool {
        switch configuration.storage.backend {
        case .sqlite: storeExists
        case .postgres: true
        }
    }

    /// Whether this user can open the configured store; false for a reader
    /// of tokens.db who may not write the storage directory (`token` then
    /// reads tokens.db itself).
    var canOpenConfiguredStore: Bool {
        switch configuration.storage.backend {
        case .sqlite:
            let directory = configuration.storage.directory
            return access(directory, W_OK) == 0 || !FileManager.default.fileExists(atPath: directory + "/tokens.db")
        case .postgres:
            return true
        }
    }

    /// What `check-config` reports of the storage, and the settings' own
    /// checks (a password file's mode) without contacting anything.
    func describeStorage() throws(CommandFailure) -> [String] {
        switch configuration.storage.backend {
        case .sqlite:
            return ["  storage.directory  \(configuration.storage.directory)"]
        case .postgres:
            do throws(ConfigurationError) {
                let settings = try configuration.postgresSettings(environment: environment)
                let password =
                    try AppSecretLoader(environment: environment).postgresPassword(for: configuration)
                    .map { "password fingerprint \(Secret.fingerprint(of: $0.exposedValue))" } ?? "no password"
                return [
                    "  storage.directory  \(configuration.storage.directory)",
                    "  storage.backend    postgres: \(settings.displayURL) schema \(settings.schema) (\(password); "
                        + "not contacted)",
                    "  storage.postgres.tls \(settings.tls.rawValue)"
                        + (settings.unauthenticatedServer.map { " (warning: \($0))" } ?? ""),
                ]
            } catch {
                throw CommandFailure(.configuration, error.description)
            }
        }
    }

    /// Opens the configured store, runs `body`, closes the store.
    func withAnyStore<T>(
        creating: Bool = false, checkReaders: Bool = true, logger: Logger = Logger(label: "tokenkeeper.store"),
        _ body: (any OperatorStore) async throws(CommandFailure) -> T
    ) async throws(CommandFailure) -> T {
        let opened = try await openConfiguredStore(
            .command(creating: creating, checkReaders: checkReaders), logger: logger)
        do {
            let result = try await body(opened.store)
            await opened.close()
            return result
        } catch {
            await opened.close()
            throw error
        }
    }

    // MARK: - SQLite

    private func openSQLite(_ purpose: StorePurpose, logger: Logger) async throws(CommandFailure) -> OpenedStore {
        let directory = configuration.storage.directory
        var lock: StorageLock?
        var checkReaders = false
        switch purpose {
        case .command(let creating, let check):
            checkReaders = check
            guard creating || storeExists else {
                throw CommandFailure(
                    .failure,
                    "there is no tokenkeeper store in \(directory) (storage.directory): enroll a "
                        + "seller with 'tokenkeeper add' or 'tokenkeeper import', or check storage.directory")
            }
        case .daemon:
            lock = try takeStorageLock(directory)
        }
        // tokens.db is checked against keeper.db after a daemon's start
        // (ReadersCheck), not before READY.
        let store = try await openKeeperDatabase(logger: logger, checkReadersAtOpen: checkReaders)
        let held = lock
        return OpenedStore(
            store: store, startingMetadata: ["storage": "\(directory)"],
            backgroundServices: { hooks in
                [
                    .init(
                        service: ReadersCheck(
                            check: { try await store.checkReaders() }, logger: Logger(label: "tokenkeeper.store"),
                            waitUntilReady: hooks.waitUntilReady),
                        successTerminationBehavior: .ignore, serviceName: "readers-check")
                ]
            },
            presence: { StorePresence(directory: directory, daemon: StorageLock.probe(directory: directory)) },
            backup: { destination throws(CommandFailure) in
                try await storeCall("backing up keeper.db") { try await store.backup(to: destination) }
            },
            close: {
                try? await store.close()
                withExtendedLifetime(held) {}
            })
    }

    /// The storage directory's lock: one daemon (or `migrate`) at a time.
    func takeStorageLock(_ directory: String) throws(CommandFailure) -> StorageLock {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            return try StorageLock(directory: directory)
        } catch let error as StorageLock.HeldElsewhere {
            throw CommandFailure(.failure, error.description)
        } catch {
            throw CommandFailure(
                .configuration,
                ConfigurationError(key: "storage.directory", problem: "cannot be used: \(error)").description)
        }
    }

    /// Opens keeper.db and tokens.db in `storage.directory`; refused once
    /// keeper.db was copied to PostgreSQL.
    func openKeeperDatabase(logger: Logger, checkReadersAtOpen: Bool = true) async throws(CommandFailure)
        -> SQLiteAccountStore
    {
        let directory = configuration.storage.directory
        if let note = MigrationMarker.read(directory: directory) {
            throw CommandFailure(
                .configuration,
                "configuration error: storage.backend: keeper.db in \(directory) was copied to PostgreSQL "
                    + "(\(note)); the sellers' refresh tokens rotate there now and the ones in keeper.db are dead "
                    + "or soon will be: set storage.backend: postgres. (To use keeper.db again regardless, remove "
                    + "\(MigrationMarker.path(directory: directory)) knowing that its tokens are stale.)")
        }
        do {
            return try await SQLiteAccountStore.open(
                directory: directory, options: SQLiteAccountStore.Options(checkReadersAtOpen: checkReadersAtOpen),
                clock: wallClock, logger: logger)
        } catch let error as SQLiteStoreError {
            if case .fileProblem = error {
                throw CommandFailure(
                    .configuration,
                    ConfigurationError(
                        key: "storage.directory", problem: "cannot be used: \(error)",
                        remedy: "check that \(directory) exists and that this user may write to it "
                            + "(run tokenkeeper as the tokenkeeper user, e.g. with 'sudo -u tokenkeeper')"
                    ).description)
            }
            switch error {
            case .notADatabase, .foreignDatabase, .schemaTooNew:
                // Restarting will not cure it (systemd's RestartPreventExitStatus=78);
                // the message says what to do, and the file was left untouched.
                throw CommandFailure(.configuration, "cannot open the account store: \(error)")
            default:
                throw CommandFailure(.failure, "cannot open the account store: \(error)")
            }
        } catch {
            throw CommandFailure(.failure, "cannot open the account store in \(directory): \(error)")
        }
    }

    // MARK: - PostgreSQL

    private func openPostgres(_ purpose: StorePurpose, logger: Logger) async throws(CommandFailure) -> OpenedStore {
        let store = try await openPostgresStore(lockTimeout: purpose.isDaemon, logger: logger)
        let postgres = configuration.storage.postgres
        let location = "\(store.settings.displayURL) schema \(store.settings.schema)"
        var metadata: Logger.Metadata = ["storage": "\(location)"]
        if case .daemon(let leaseOwner) = purpose { metadata["node"] = "\(leaseOwner)" }
        return OpenedStore(
            store: store, startingMetadata: metadata,
            backgroundServices: { hooks in
                guard case .daemon(let leaseOwner) = purpose else { return [] }
                return [
                    .init(
                        service: PostgresClusterService(
                            store: store, node: leaseOwner, host: ProcessInfo.processInfo.hostName,
                            pid: ProcessInfo.processInfo.processIdentifier,
                            heartbeat: .milliseconds(Int64(postgres.heartbeatSeconds * 1000)),
                            takeover: .milliseconds(Int64(postgres.takeoverSeconds * 1000)),
                            onLiveNodes: hooks.liveNodesChanged),
                        successTerminationBehavior: .ignore, serviceName: "cluster")
                ]
            },
            presence: {
                let nodes = (try? await store.nodes()) ?? []
                return StorePresence(postgres: location, nodes: nodes, heartbeatSeconds: postgres.heartbeatSeconds)
            },
            backup: { _ throws(CommandFailure) in
                throw CommandFailure(.usage, Self.postgresBackupAdvice(store.settings, location: location))
            },
            close: { store.close() })
    }

    /// What `backup` says on PostgreSQL: the command that backs up the schema.
    static func postgresBackupAdvice(_ settings: PostgresSettings, location: String) -> String {
        var command = ["pg_dump"]
        if let host = settings.host {
            command += ["--host=\(host)", "--port=\(settings.port)"]
        } else if let socket = settings.socketPath {
            command += ["--host=\((socket as NSString).deletingLastPathComponent)", "--port=\(settings.port)"]
        }
        command += [
            "--username=\(settings.username)", "--schema=\(settings.schema)", "--format=custom",
            "--file=tokenkeeper-$(date +%Y%m%d-%H%M%S).dump", settings.database,
        ]
        return """
            backup copies keeper.db; the sellers are in PostgreSQL (\(location)). Back up the schema with \
            PostgreSQL's own tools, as a role that may read it (the dump holds every refresh token: keep it \
            private): \(command.joined(separator: " ")) (restore with pg_restore --dbname=\(settings.database)), \
            or the server's base backups and WAL archive
            """
    }

    /// Opens the PostgreSQL store (creating or upgrading its schema).
    /// - Parameter lockTimeout: Whether a lock wait ends as contention
    ///   (``PostgresSettings/lockTimeout``): the daemon's writes are retried
    ///   by the scheduler; a command waits for another's transaction.
    func openPostgresStore(lockTimeout: Bool = false, logger: Logger) async throws(CommandFailure)
        -> PostgresAccountStore
    {
        var settings: PostgresSettings
        do {
            settings = try configuration.postgresSettings(environment: environment)
            if lockTimeout {
                settings.lockTimeout = PostgresSettings.daemonLockTimeout(statementTimeout: settings.statementTimeout)
            }
        } catch {
            throw CommandFailure(.configuration, error.description)
        }
        if let warning = settings.unauthenticatedServer, lockTimeout {
            logger.warning("the PostgreSQL server is not authenticated", metadata: ["problem": "\(warning)"])
        }
        // Never below info: postgres-nio's debug lines carry statements,
        // whose values hold tokens.
        var logger = logger
        logger.logLevel = max(logger.logLevel, .info)
        do {
            return try await PostgresAccountStore.open(settings: settings, logger: logger)
        } catch let error as PostgresStoreError {
            if case .schemaTooNew = error { throw CommandFailure(.configuration, "\(settings.displayURL): \(error)") }
            throw CommandFailure(.failure, "cannot open the PostgreSQL store \(settings.displayURL): \(error)")
        } catch {
            throw CommandFailure(.failure, "cannot open the PostgreSQL store \(settings.displayURL): \(error)")
        }
    }
}

/// The configured store, open, with what only its backend runs or knows.
struct OpenedStore: Sendable {
    let store: any OperatorStore
    /// How the daemon's starting line names the storage.
    let startingMetadata: Logger.Metadata
    /// Services only this backend runs beside a daemon: SQLite compares
    /// tokens.db with keeper.db after READY; PostgreSQL keeps this node's
    /// heartbeat and LISTEN.
    let backgroundServices: @Sendable (StoreHooks) -> [ServiceGroupConfiguration.ServiceConfiguration]
    /// Who runs on the store now (`status`).
    let presence: @Sendable () async -> StorePresence
    /// `backup DEST`: an online copy where the backend makes one; a usage
    /// error naming the backend's own tool where it does not.
    let backup: @Sendable (String) async throws(CommandFailure) -> String
    let close: @Sendable () async -> Void
}

/// What a backend's services need from the daemon.
struct StoreHooks: Sendable {
    /// Returns once the scheduler has loaded the schedule.
    var waitUntilReady: @Sendable () async -> Void
    /// The number of live daemons sharing the store changed (this one included).
    var liveNodesChanged: @Sendable (Int) -> Void
}

// MARK: - What only PostgreSQL has: `postgres init` and `migrate --to postgres`

/// The schema's administration (`postgres init`).
protocol SchemaAdministration: Sendable {
    /// The server and schema, without a password.
    var location: String { get }
    /// Creates the readers' role (or sets its password) and grants it the
    /// readers' views only; returns what was done, a line each.
    func grantReaders(password: String?) async throws -> [String]
    func close()
}

/// Where `migrate` copies keeper.db's sellers to, and reads them back from.
protocol BulkCopyTarget: Sendable {
    var location: String { get }
    func accountCount() async throws -> Int
    /// Stores accounts as they are (tokens, status, schedule; no lease), one
    /// transaction per call; refused whole if any seller is already there.
    func copyAccounts(_ accounts: [Account], now: Timestamp) async throws
    /// Account keys and refresh tokens after `key`, by app and then seller id bytewise.
    func refreshTokens(after key: AccountKey?, limit: Int) async throws -> [(AccountKey, Secret)]
    func close()
}

extension PostgresAccountStore: SchemaAdministration, BulkCopyTarget {
    var location: String { "\(settings.displayURL) schema \(settings.schema)" }
}

extension CommandContext {
    /// The readers' role's name on PostgreSQL.
    static let readerRoleName = PostgresAccountStore.readerRole

    /// The SQL `postgres init` runs for the readers' role, for a DBA to run instead.
    var readerRoleSQL: [String] { PostgresAccountStore.readerSQL(schema: configuration.storage.postgres.schema) }

    /// Opens the configured PostgreSQL schema (creating or upgrading it).
    func openSchemaAdministration() async throws(CommandFailure) -> any SchemaAdministration {
        try await openPostgresStore(logger: Logger(label: "tokenkeeper.store"))
    }

    /// Opens keeper.db and the PostgreSQL schema for `migrate --to postgres`.
    func openMigration() async throws(CommandFailure)
        -> (source: any ManagedAccountStore, target: any BulkCopyTarget, close: @Sendable () async -> Void)
    {
        let source = try await openKeeperDatabase(logger: Logger(label: "tokenkeeper.store"))
        let target: PostgresAccountStore
        do throws(CommandFailure) {
            target = try await openPostgresStore(logger: Logger(label: "tokenkeeper.store"))
        } catch {
            try? await source.close()
            throw error
        }
        return (
            source, target,
            {
                try? await source.close()
                target.close()
            }
        )
    }
}
