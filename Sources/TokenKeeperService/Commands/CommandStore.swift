import Foundation
import Logging
import PostgresStore
import SQLiteStore
import TokenKeeperCore

/// The store as the commands and the daemon use it, whatever the backend.
typealias CommandStore = ManagedAccountStore

extension CommandContext {
    /// Opens the configured store, runs `body`, closes the store.
    func withAnyStore<T>(
        creating: Bool = false, checkReaders: Bool = true, logger: Logger = Logger(label: "tokenkeeper.store"),
        _ body: (any CommandStore) async throws(CommandFailure) -> T
    ) async throws(CommandFailure) -> T {
        switch configuration.storage.backend {
        case .sqlite:
            return try await withStore(creating: creating, checkReaders: checkReaders, logger: logger) {
                store throws(CommandFailure) in try await body(store)
            }
        case .postgres:
            let store = try await openPostgresStore(logger: logger)
            do {
                let result = try await body(store)
                store.close()
                return result
            } catch {
                store.close()
                throw error
            }
        }
    }

    /// Opens the PostgreSQL store (creating or upgrading its schema).
    func openPostgresStore(logger: Logger) async throws(CommandFailure) -> PostgresAccountStore {
        let settings: PostgresSettings
        do {
            settings = try configuration.postgresSettings(environment: environment)
        } catch {
            throw CommandFailure(.configuration, error.description)
        }
        // Never below info: postgres-nio's debug lines carry statements.
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

    /// For the commands that need keeper.db's events, outbox or files
    /// (`status`' details, `events`, `backup`, the callback's keys): a clear
    /// refusal on PostgreSQL rather than a half answer.
    func requireSQLite() throws(CommandFailure) {
        guard configuration.storage.backend == .sqlite else {
            let command = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") } ?? "this command"
            throw CommandFailure(
                .configuration,
                "configuration error: storage.backend: '\(command)' works on the sqlite backend only for now; "
                    + "on postgres, see docs/OPERATIONS.md (\"Not available on PostgreSQL yet\")")
        }
    }
}
