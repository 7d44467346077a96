import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

@Suite struct MigrationTests {
    @Test func freshDirectoryGetsBothSchemasAtTheLatestVersion() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        try await store.close()
        for (name, schema) in [("keeper.db", DatabaseSchema.keeper), ("tokens.db", DatabaseSchema.tokens)] {
            let connection = try SQLiteConnection(path: scratch.file(name), flags: [.readOnly])
            #expect(try connection.userVersion() == schema.latestVersion)
            #expect(try connection.applicationID() == schema.applicationID)
            #expect(try connection.pragma("journal_mode") == .text("wal"))
        }
    }

    @Test func reopeningKeepsDataAndVersion() async throws {
        let scratch = try ScratchDirectory()
        var store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        try await store.close()
        store = try await scratch.open()
        #expect(try await store.account("1001") != nil)
        try await store.close()
        let connection = try SQLiteConnection(path: scratch.keeperPath, flags: [.readOnly])
        #expect(try connection.userVersion() == DatabaseSchema.keeper.latestVersion)
    }

    /// A store written by the single-app release (keeper.db version 5,
    /// tokens.db version 1) is migrated at open: its accounts, tombstones and
    /// events belong to the default app, and the readers' queries of that
    /// release still answer.
    @Test func aSingleAppStoreIsMigratedToAppsWithItsReadersQueriesAnswering() async throws {
        let scratch = try ScratchDirectory()
        let now = Timestamp(millisecondsSince1970: 4_102_444_800_000)  // 2100: a valid token for the view
        for (schema, version) in [(DatabaseSchema.keeper, Int64(5)), (DatabaseSchema.tokens, Int64(1))] {
            let old = DatabaseSchema(
                fileName: schema.fileName, applicationID: schema.applicationID,
                migrations: schema.migrations.filter { $0.version <= version })
            let connection = try SQLiteConnection(path: scratch.file(schema.fileName), flags: [.readWrite, .create])
            try old.migrate(connection)
            try connection.close()
        }
        let keeper = try SQLiteConnection(path: scratch.keeperPath)
        try keeper.execute(
            """
            INSERT INTO accounts (seller_id, refresh_token, access_token, expire_time, status, next_refresh_at,
                refreshed_at, created_at, updated_at, change_seq, user_nick)
            VALUES ('1001', 'RT-old', 'AT-old', \(now.stored), 'active', 0, 0, 0, 0, 1, 'nick');
            INSERT INTO removed_accounts (seller_id, removed_at, change_seq) VALUES ('0999', 0, 1);
            INSERT INTO events (at, seller_id, kind, detail) VALUES (0, '1001', 'enrolled', 'old');
            INSERT INTO events (at, seller_id, kind, detail) VALUES (0, NULL, 'readers_repaired', 'old');
            """)
        try keeper.close()
        let tokens = try SQLiteConnection(path: scratch.file("tokens.db"))
        try tokens.execute(
            """
            INSERT INTO tokens (seller_id, user_nick, access_token, expire_time, status, refreshed_at, updated_at)
            VALUES ('1001', 'nick', 'AT-old', \(now.stored), 'active', 0, 0)
            """)
        try tokens.close()

        let store = try await scratch.open()
        let account = try #require(try await store.account("1001"))
        #expect(account.key == AccountKey(app: .default, sellerID: "1001"))
        #expect(account.refreshToken == Secret("RT-old"))
        #expect(try await store.accountKeys(sellerID: "1001") == ["1001"])
        let events = try await store.recentEvents(limit: 10)
        #expect(events.map(\.app) == [nil, .default])
        #expect(try await store.loadSchedule().map(\.key) == ["1001"])
        try await store.close()

        let reader = try SQLiteConnection(path: scratch.file("tokens.db"), flags: [.readOnly])
        defer { try? reader.close() }
        #expect(try reader.userVersion() == DatabaseSchema.tokens.latestVersion)
        func strings(_ sql: String) throws -> [String] {
            let statement = try reader.prepare(sql)
            defer { statement.finalize() }
            return try statement.rows { $0.string(0) }
        }
        #expect(try strings("SELECT access_token FROM tokens WHERE seller_id = '1001'") == ["AT-old"])
        #expect(try strings("SELECT access_token FROM valid_tokens WHERE seller_id = '1001'") == ["AT-old"])
        #expect(try strings("SELECT app || ' ' || user_nick FROM tokens") == ["default nick"])
        #expect(
            try strings("SELECT app || ' ' || access_token FROM seller_tokens WHERE seller_id = '1001'") == [
                "default AT-old"
            ])
    }

    /// keeper.db version 7 rebuilds `accounts` with its CHECKs written as
    /// comparisons: `status IN (...)` made SQLite build a temporary index of
    /// the list for every row written. The rows, the rules, the indexes and
    /// the reactivation trigger are all still there.
    @Test func theAccountsChecksNoLongerBuildATemporaryIndexForEveryRowWritten() async throws {
        let scratch = try ScratchDirectory()
        let old = DatabaseSchema(
            fileName: "keeper.db", applicationID: DatabaseSchema.keeper.applicationID,
            migrations: DatabaseSchema.keeper.migrations.filter { $0.version <= 6 })
        let connection = try SQLiteConnection(path: scratch.keeperPath, flags: [.readWrite, .create])
        try old.migrate(connection)
        let insert = "INSERT INTO accounts (seller_id, refresh_token, status, created_at, updated_at, change_seq)"
        func temporaryIndexes(_ connection: SQLiteConnection) throws -> Int {
            let explain = try connection.prepare("EXPLAIN \(insert) VALUES ('x', 'RT', 'active', 0, 0, 1)")
            defer { explain.finalize() }
            return try explain.rows { $0.string(1) }.filter { $0 == "OpenEphemeral" }.count
        }
        #expect(try temporaryIndexes(connection) == 1, "version 6 builds one per row written")
        try connection.execute(
            """
            \(insert.dropLast()), access_token, expire_time, status_reason, user_nick, country)
            VALUES ('1001', 'RT-old', 'reauth_required', 0, 0, 1, 'AT-old', 4102444800000, 'RotationLost', 'shop', 'sg')
            """)
        try connection.close()

        let store = try await scratch.open()
        let account = try #require(try await store.account("1001"))
        #expect(account.status == .reauthRequired && account.statusReason == "RotationLost")
        #expect(account.refreshToken == Secret("RT-old") && account.profile.userNick == "shop")
        #expect(account.profile.country == "sg")
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        #expect(try await store.events(EventQuery(kind: .reactivated)).map(\.detail) == ["was RotationLost"])
        try await store.close()

        let keeper = try SQLiteConnection(path: scratch.keeperPath)
        defer { try? keeper.close() }
        #expect(try keeper.userVersion() == DatabaseSchema.keeper.latestVersion)
        #expect(try temporaryIndexes(keeper) == 0)
        // The same rules: an unknown status, a refreshable flag other than 0 or 1.
        #expect(throws: SQLiteError.self) { try keeper.execute("\(insert) VALUES ('bad', 'RT', 'bogus', 0, 0, 2)") }
        #expect(throws: SQLiteError.self) {
            try keeper.execute("UPDATE accounts SET refreshable = 2 WHERE seller_id = '1001'")
        }
        let indexes = try keeper.prepare(
            "SELECT name FROM sqlite_schema WHERE tbl_name = 'accounts' AND sql IS NOT NULL ORDER BY name")
        defer { indexes.finalize() }
        #expect(
            try indexes.rows { $0.string(0) } == [
                "accounts", "accounts_by_change", "accounts_by_reauth", "accounts_by_seller", "accounts_disabled",
                "accounts_reactivated", "accounts_reauth_required", "accounts_schedule",
            ])
    }

    /// `tokenkeeper token SELLER` run by a reader (who reads tokens.db only)
    /// with this release's binary before the daemon migrated the file.
    @Test func aReaderOfASingleAppTokensDatabaseFindsTheSellerInTheAppDefault() throws {
        let scratch = try ScratchDirectory()
        let old = DatabaseSchema(
            fileName: "tokens.db", applicationID: DatabaseSchema.tokens.applicationID,
            migrations: DatabaseSchema.tokens.migrations.filter { $0.version <= 1 })
        let connection = try SQLiteConnection(path: scratch.file("tokens.db"), flags: [.readWrite, .create])
        try old.migrate(connection)
        try connection.execute(
            """
            INSERT INTO tokens (seller_id, access_token, expire_time, status, refreshed_at, updated_at)
            VALUES ('1001', 'AT-old', 4102444800000, 'active', 0, 0)
            """)
        try connection.close()
        let rows = try ReadersView.rows(sellerID: "1001", app: nil, directory: scratch.path)
        #expect(rows.map(\.app) == ["default"])
        #expect(rows.first?.accessToken == Secret("AT-old"))
        #expect(try ReadersView.rows(sellerID: "1001", app: "lazada_sg", directory: scratch.path).isEmpty)
    }

    @Test func twoProcessesOpeningAFreshDirectoryAtOnceBothSucceed() async throws {
        let scratch = try ScratchDirectory()
        async let first = scratch.open()
        async let second = scratch.open()
        let (a, b) = try await (first, second)
        _ = try await a.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        #expect(try await b.account("1001") != nil)
        try await a.close()
        try await b.close()
    }

    @Test(arguments: ["keeper.db", "tokens.db"])
    func newerSchemaIsRefusedAndLeftUntouched(fileName: String) async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        try await store.close()
        do {
            let connection = try SQLiteConnection(path: scratch.file(fileName))
            try connection.setUserVersion(99)
            try connection.close()
        }
        let before = snapshot(scratch, fileName)

        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        #expect(
            error.description
                == "\(fileName) at \(scratch.file(fileName)) has schema version 99 "
                + "but this tokenkeeper knows up to \(fileName == "keeper.db" ? DatabaseSchema.keeper.latestVersion : DatabaseSchema.tokens.latestVersion); upgrade tokenkeeper"
        )
        #expect(snapshot(scratch, fileName) == before)
    }

    // tokens.db is derived: a damaged one is moved aside and rebuilt
    // (HardeningStoreTests), never refused.
    @Test(arguments: ["keeper.db"])
    func fileThatIsNotADatabaseIsRefusedAndLeftUntouched(fileName: String) async throws {
        let scratch = try ScratchDirectory()
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
        try scratch.write(fileName, garbage)
        chmod(scratch.file(fileName), 0o644)
        let listing = scratch.listing()

        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        guard case .notADatabase(let path, _) = error else {
            Issue.record("expected notADatabase, got \(error)")
            return
        }
        #expect(path == scratch.file(fileName))
        #expect(error.description.contains(scratch.file(fileName)))
        #expect(scratch.bytes(fileName) == garbage)
        #expect(scratch.mode(fileName) == 0o644)
        // keeper.db may have been created before tokens.db was found bad; nothing
        // was created beside the bad file itself (no -wal, -shm or -journal).
        #expect(scratch.listing().filter { $0.hasPrefix(fileName) } == listing.filter { $0.hasPrefix(fileName) })
    }

    @Test func anotherApplicationsDatabaseIsRefused() async throws {
        let scratch = try ScratchDirectory()
        do {
            let connection = try SQLiteConnection(path: scratch.keeperPath)
            try connection.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
            try connection.close()
        }
        let before = scratch.bytes("keeper.db")
        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        guard case .foreignDatabase(let path, _) = error else {
            Issue.record("expected foreignDatabase, got \(error)")
            return
        }
        #expect(path == scratch.keeperPath)
        #expect(scratch.bytes("keeper.db") == before)
    }

    @Test func swappedFilesAreRefused() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        try await store.close()
        try FileManager.default.removeItem(atPath: scratch.keeperPath)
        try FileManager.default.copyItem(atPath: scratch.tokensPath, toPath: scratch.keeperPath)
        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        #expect(error.description.contains("is not a tokenkeeper database"))
    }

    private func snapshot(_ scratch: ScratchDirectory, _ fileName: String) -> [String: Data] {
        var files: [String: Data] = [:]
        for name in scratch.listing() where name.hasPrefix(fileName) {
            files[name] = scratch.bytes(name)
        }
        return files
    }
}
