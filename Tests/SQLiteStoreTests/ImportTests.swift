import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

@Suite struct ImportTests {
    let scratch: ScratchDirectory

    init() throws {
        scratch = try ScratchDirectory()
    }

    @Test func badRecordsAreRefusedByIndexAndTheRestStoredInBatches() async throws {
        let store = try await scratch.open()
        var records = (0..<25).map { index in
            ImportRecord(
                sellerID: "s\(index)", refreshToken: Tokens.refresh(),
                accessToken: index % 2 == 0 ? Tokens.access() : nil,
                expireTime: index % 2 == 0 ? Moments.farFuture : nil,
                refreshTokenValidTime: Moments.farFuture)
        }
        records[3].sellerID = ""
        records[7].refreshToken = Secret("")
        records[10].expireTime = nil  // access token without expiry
        records[12].accessToken = Secret("")
        records[20].sellerID = "bad\nid"

        let summary = try await store.importAccounts(records, batchSize: 4, now: Moments.now)

        #expect(summary.imported == 20)
        #expect(summary.refused.map(\.index) == [3, 7, 10, 12, 20])
        #expect(
            summary.refused.map(\.problem) == [
                "seller id is empty", "refresh token is empty", "access token given without expire time",
                "access token is empty", "seller id contains control characters",
            ])
        let stored = try await store.allAccounts()
        #expect(stored.count == 20)
        #expect(!stored.contains { ["", "s7", "s10", "s12"].contains($0.sellerID) })
        // Readers see the sellers that came with an access token.
        let withAccess = stored.filter { $0.accessToken != nil }.map(\.sellerID).sorted()
        #expect(try ReaderView.rows(scratch).map(\.sellerID) == withAccess)
        #expect(withAccess.count == 10)
        // One transaction, and so one change sequence, per batch of 4.
        let keeper = try SQLiteConnection(path: scratch.keeperPath, flags: [.readOnly])
        #expect(try keeper.prepare("SELECT count(DISTINCT change_seq) FROM accounts").firstRow { $0.int64(0) } == 5)
        try await store.close()
    }

    /// An imported token is capped at start by a fifth of its life before
    /// expiry: the life given (`expires_in`), else what was left of it at
    /// the import; never a fixed five minutes that would make a short token
    /// due at once.
    @Test func importedTokenIsCappedByItsLifetimeWhenGiven() async throws {
        let store = try await scratch.open()
        let records = [(seller: "known", lifetime: Duration?.some(.seconds(600))), ("unknown", nil)].map { entry in
            var record = ImportRecord(
                sellerID: entry.seller, refreshToken: Tokens.refresh(), accessToken: Tokens.access(),
                expireTime: Moments.now + .seconds(600), accessTokenLifetime: entry.lifetime,
                refreshTokenValidTime: Moments.farFuture)
            record.nextRefreshAt = Moments.now + .seconds(500)
            return record
        }
        _ = try await store.importAccounts(records, now: Moments.now)
        let schedule = try await store.loadSchedule().sorted { $0.key < $1.key }
        #expect(
            schedule.deadlines == [
                ScheduledAccount("known", due: Moments.now + .seconds(480)),
                ScheduledAccount("unknown", due: Moments.now + .seconds(480)),
            ])
        #expect(try await store.account("known")?.accessTokenLifetime == .seconds(600))
        try await store.close()
    }

    @Test func importedAccountWithoutDeadlineIsDueAtOnce() async throws {
        let store = try await scratch.open()
        _ = try await store.importAccounts(
            [ImportRecord(sellerID: "1", refreshToken: Tokens.refresh())], now: Moments.now)
        #expect(try await store.loadSchedule() == [ScheduledAccount("1", due: Moments.now)])
        try await store.close()
    }

    @Test func reimportReplacesTokensAndRevivesTheAccount() async throws {
        let store = try await scratch.open()
        let old = Tokens.refresh("old")
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", refresh: old, profile: SellerProfile(userNick: "shop")),
            nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.markReauthRequired(
            account: "1001", sent: old, reason: "IllegalRefreshToken", requestID: nil, now: Moments.now)
        let (access, new) = (Tokens.access(), Tokens.refresh("new"))
        let later = Moments.now + .seconds(60)
        let summary = try await store.importAccounts(
            [ImportRecord(sellerID: "1001", refreshToken: new, accessToken: access, expireTime: Moments.farFuture)],
            now: later)
        #expect(summary == ImportSummary(imported: 1))
        let account = try #require(try await store.account("1001"))
        #expect(account.refreshToken == new && account.accessToken == access)
        #expect(account.status == .active && account.statusReason == nil && account.failedAttempts == 0)
        #expect(account.profile.userNick == "shop")
        #expect(account.nextRefreshAt == later)
        #expect(try ReaderView.validSellers(scratch) == ["1001"])
        try await store.close()
    }

    /// Each batch is copied to tokens.db on a thread of its own while the
    /// next is written to keeper.db; a copy that fails (another writer holds
    /// tokens.db) loses nothing: every seller is in keeper.db, the import
    /// succeeds, and the next write brings tokens.db in line.
    @Test func anImportWhileTokensDatabaseIsLockedStoresEverySellerAndTheNextWriteRepairs() async throws {
        let store = try await scratch.open(options: .init(busyTimeout: .milliseconds(50)))
        let blocker = try SQLiteConnection(path: scratch.tokensPath)
        try blocker.setPersistentWAL(true)
        try blocker.execute("BEGIN IMMEDIATE")
        let records = (0..<12).map { index in
            ImportRecord(
                sellerID: "s\(index + 10)", refreshToken: Tokens.refresh(), accessToken: Tokens.access(),
                expireTime: Moments.farFuture, refreshTokenValidTime: Moments.farFuture)
        }
        let summary = try await store.importAccounts(records, batchSize: 4, now: Moments.now)
        try blocker.execute("ROLLBACK")
        try blocker.close()
        #expect(summary.imported == 12)
        #expect(try await store.allAccounts().count == 12)
        #expect(try ReaderView.rows(scratch).isEmpty)

        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        #expect(try ReaderView.rows(scratch).map(\.sellerID).sorted() == (["1001"] + records.map(\.sellerID)).sorted())
        try await store.close()
    }

    @Test func batchThatCannotGetTheWriteLockStopsTheImportAndKeepsEarlierBatches() async throws {
        let store = try await scratch.open(options: .init(busyTimeout: .milliseconds(50)))
        _ = try await store.importAccounts(
            [ImportRecord(sellerID: "first", refreshToken: Tokens.refresh())], now: Moments.now)
        let blocker = try SQLiteConnection(path: scratch.keeperPath)
        try blocker.execute("BEGIN IMMEDIATE")
        let error = await #expect(throws: SQLiteStoreError.self) {
            try await store.importAccounts(
                (0..<3).map { ImportRecord(sellerID: "s\($0)", refreshToken: Tokens.refresh()) }, batchSize: 2,
                now: Moments.now)
        }
        try blocker.execute("ROLLBACK")
        try blocker.close()
        guard case .importInterrupted(let imported, let cause) = error else {
            Issue.record("expected importInterrupted, got \(String(describing: error))")
            return
        }
        #expect(imported == 0)
        #expect(cause.isBusy)
        #expect(try await store.allAccounts().map(\.sellerID) == ["first"])
        try await store.close()
    }

    /// 100,000 accounts, as `tokenkeeper import` of a large JSONL file would
    /// store them. Opt-in because it takes seconds in a debug build:
    /// `TOKENKEEPER_STORE_BENCH=1 swift test --filter SQLiteStoreTests.ImportTests`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TOKENKEEPER_STORE_BENCH"] == "1"))
    func hundredThousandAccountsImportInSeconds() async throws {
        let count = 100_000
        let records = (0..<count).map { index in
            ImportRecord(
                sellerID: "seller-\(index)", refreshToken: Secret("RT-\(index)-\(UUID().uuidString)"),
                accessToken: Secret("AT-\(index)-\(UUID().uuidString)"), expireTime: Moments.farFuture,
                refreshTokenValidTime: Moments.farFuture, profile: SellerProfile(userNick: "nick \(index)"),
                nextRefreshAt: Moments.now + .seconds(Int64(index % 86_400)))
        }
        let clock = ContinuousClock()
        let store = try await scratch.open()
        let importTime = try await clock.measure {
            let summary = try await store.importAccounts(records, batchSize: 2000, now: Moments.now)
            #expect(summary.imported == count)
        }
        try await store.close()

        let reopenTime = try await clock.measure { try await scratch.open().close() }
        try ReaderView.tamper(scratch.tokensPath, "DELETE FROM tokens")
        let rebuildTime = try await clock.measure { try await scratch.open().close() }
        #expect(try ReaderView.rows(scratch).count == count)
        let store2 = try await scratch.open()
        var start = clock.now
        let schedule = try await store2.loadSchedule()
        let scheduleTime = clock.now - start
        #expect(schedule.count == count)
        let cursor = try await store2.changes(since: nil).cursor
        start = clock.now
        _ = try await store2.changes(since: cursor)
        let changesTime = clock.now - start
        try await store2.close()
        print(
            "SQLiteStore bench: import \(count) = \(importTime), open with check = \(reopenTime), "
                + "open with full rebuild = \(rebuildTime), loadSchedule = \(scheduleTime), "
                + "idle changes() = \(changesTime)"
        )
        #expect(importTime < .seconds(60))
        #expect(reopenTime < .seconds(10))
    }
}
