import Foundation
import Logging
import PostgresStore
import TokenKeeperCore

extension Commands {
    /// `tokenkeeper postgres init`: creates (or upgrades) the schema and the
    /// readers' role `tokenkeeper_reader`, granted `tokens` and
    /// `valid_tokens` and nothing else. `printSQL` only prints what it would
    /// run, for a DBA to run instead.
    public static func postgresInit(readerPasswordFile: String?, printSQL: Bool, configPath: String?) async
        -> CommandOutcome
    {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            if printSQL {
                Console.out(context.readerRoleSQL.map { $0 + ";" }.joined(separator: "\n"))
                return .success
            }
            var password: String?
            if let readerPasswordFile {
                do throws(ConfigurationError) {
                    password = try AppSecretLoader.readSecretFile(
                        readerPasswordFile, key: "--reader-password-file", checkMode: true,
                        what: "the reader role's password"
                    ).exposedValue
                } catch {
                    throw CommandFailure(.usage, error.description)
                }
            } else if let value = context.environment["TOKENKEEPER_READER_PASSWORD"], !value.isEmpty {
                password = value
            }
            let store = try await context.openSchemaAdministration()
            defer { store.close() }
            do {
                for line in try await store.grantReaders(password: password) { Console.out(line) }
            } catch {
                throw CommandFailure(
                    .failure,
                    "setting up \(CommandContext.readerRoleName) failed: \(error); a superuser (or a role with "
                        + "CREATEROLE) can run the SQL of 'tokenkeeper postgres init --print-sql' instead")
            }
            Console.out("\(store.location) is ready")
            return .success
        }
    }

    /// `tokenkeeper migrate --to postgres`: copies keeper.db (the daemon
    /// stopped: the storage lock is taken) into an empty PostgreSQL schema,
    /// then reads every seller back and compares the count and every refresh
    /// token. keeper.db is left as it was.
    public static func migrateToPostgres(configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let directory = context.configuration.storage.directory
            guard context.storeExists else {
                throw CommandFailure(
                    .failure, "there is no keeper.db in \(directory) (storage.directory): nothing to migrate")
            }
            let lock: StorageLock
            do throws(CommandFailure) {
                lock = try context.takeStorageLock(directory)
            } catch {
                throw CommandFailure(
                    .failure,
                    "\(error.message); stop the daemon first (systemctl stop tokenkeeper): "
                        + "a copy taken while it refreshes would hold refresh tokens it has since rotated")
            }
            defer { withExtendedLifetime(lock) {} }
            if let note = MigrationMarker.read(directory: directory) {
                throw CommandFailure(.failure, "keeper.db in \(directory) was already copied to PostgreSQL (\(note))")
            }
            let (source, target, close) = try await context.openMigration()
            do throws(CommandFailure) {
                let outcome = try await copy(from: source, to: target, directory: directory)
                await close()
                return outcome
            } catch {
                await close()
                throw error
            }
        }
    }

    private static func copy(
        from source: any ManagedAccountStore, to target: any BulkCopyTarget, directory: String
    ) async throws(CommandFailure) -> CommandOutcome {
        let url = target.location
        let existing = try await storeCall("counting the sellers in \(url)") { try await target.accountCount() }
        guard existing == 0 else {
            throw CommandFailure(.failure, "\(url): \(PostgresStoreError.notEmpty(accounts: existing))")
        }
        let now = SystemWallClock().now()
        var copied = 0
        var last: AccountKey?
        while true {
            let page = try await storeCall("reading keeper.db") {
                try await source.accounts(app: nil, after: last, limit: migratePageSize)
            }
            guard !page.isEmpty else { break }
            try await storeCall(
                "copying to \(url) (\(copied) sellers copied so far; the schema is left "
                    + "with them: empty it before trying again)"
            ) { try await target.copyAccounts(page, now: now) }
            copied += page.count
            last = page.last?.key
            if copied % 100_000 == 0 { Console.error("copied \(copied) sellers") }
        }
        let verified = try await verifyCopy(from: source, to: target, expected: copied)
        do {
            try MigrationMarker.write(
                directory: directory, note: "to \(url) at \(SystemWallClock().now()), \(verified) sellers")
        } catch {
            throw CommandFailure(
                .failure,
                "the copy is verified, but \(MigrationMarker.path(directory: directory)) could not be written "
                    + "(\(error)): do not start a daemon on keeper.db again")
        }
        Console.out(
            "copied \(copied) sellers from \(directory)/keeper.db to \(url); verified: \(verified) sellers, "
                + "every refresh token identical")
        Console.out(
            "next: set storage.backend: postgres in the configuration of every node and start them; keep "
                + "keeper.db as it is (a daemon on it would refresh the same sellers: do not start one)")
        return .success
    }

    private static let migratePageSize = 5_000

    /// Both stores in seller order (bytewise), page by page: the same ids,
    /// the same refresh tokens, and as many as were copied.
    private static func verifyCopy(
        from source: any ManagedAccountStore, to target: any BulkCopyTarget, expected: Int
    ) async throws(CommandFailure) -> Int {
        let count = try await storeCall("counting the copy") { try await target.accountCount() }
        guard count == expected else {
            throw CommandFailure(
                .failure,
                "\(PostgresStoreError.verificationFailed("\(count) sellers in PostgreSQL, \(expected) copied"))")
        }
        var last: AccountKey?
        var compared = 0
        while true {
            let mine = try await storeCall("reading keeper.db") {
                try await source.accounts(app: nil, after: last, limit: migratePageSize)
            }
            let theirs = try await storeCall("reading the copy") {
                try await target.refreshTokens(after: last, limit: migratePageSize)
            }
            guard mine.count == theirs.count else {
                throw CommandFailure(
                    .failure,
                    "\(PostgresStoreError.verificationFailed("the sellers after \(last?.description ?? "the first") differ"))"
                )
            }
            for (account, copy) in zip(mine, theirs) {
                guard account.key == copy.0 else {
                    throw CommandFailure(
                        .failure,
                        "\(PostgresStoreError.verificationFailed("seller \(account.key) is missing or out of order"))"
                    )
                }
                guard account.refreshToken == copy.1 else {
                    throw CommandFailure(
                        .failure,
                        "\(PostgresStoreError.verificationFailed("seller \(account.key)'s refresh token differs"))"
                    )
                }
            }
            compared += mine.count
            guard let next = mine.last?.key else { return compared }
            last = next
        }
    }
}
