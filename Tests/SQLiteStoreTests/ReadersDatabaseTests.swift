import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// tokens.db: what readers get, that it never holds a refresh token, that it
/// follows keeper.db, and that it is rebuilt from keeper.db when it does not.
@Suite struct ReadersDatabaseTests {
    @Test func enrolledSellerAppearsWithItsAccessTokenAndProfile() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        let access = Tokens.access()
        let grant = makeGrant(
            seller: "1001", access: access,
            profile: SellerProfile(
                userID: "u1", userNick: "shop", account: "a@b", accountPlatform: "seller_center", sp: "ae",
                locale: "en_US"))
        _ = try await store.enroll(grant: grant, nextRefreshAt: Moments.now, now: Moments.now)

        let rows = try ReaderView.rows(scratch)
        #expect(rows.count == 1)
        let row = try #require(rows.first)
        #expect(row.sellerID == "1001")
        #expect(Secret(row.accessToken) == access)
        #expect(
            row.values == [
                .text("1001"), .text("u1"), .text("shop"), .text("a@b"), .text("seller_center"), .text("ae"),
                .text("en_US"), .text(access.exposedValue), .integer(Moments.farFuture.millisecondsSince1970),
                .integer(grant.refreshTokenValidTime!.millisecondsSince1970), .text("active"), .null,
                .integer(Moments.now.millisecondsSince1970), .integer(Moments.now.millisecondsSince1970),
            ])
        #expect(try ReaderView.validSellers(scratch) == ["1001"])
    }

    @Test func validTokensLeavesOutExpiredAndInactiveRows() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "fresh"), nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.enroll(
            grant: makeGrant(seller: "expired", expireTime: Moments.past), nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.enroll(grant: makeGrant(seller: "off"), nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.setStatus(account: "off", to: .disabled, now: Moments.now)
        #expect(try ReaderView.validSellers(scratch) == ["fresh"])
        #expect(try ReaderView.rows(scratch).map(\.sellerID) == ["expired", "fresh", "off"])
    }

    @Test func sellerWithoutAccessTokenHasNoRowUntilItGetsOne() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        let refresh = Tokens.refresh()
        _ = try await store.importAccounts(
            [ImportRecord(sellerID: "2001", refreshToken: refresh)], now: Moments.now)
        #expect(try ReaderView.rows(scratch).isEmpty)
        let stored = try await store.commitRotation(
            account: "2001", sent: refresh, grant: makeGrant(seller: "2001"), nextRefreshAt: Moments.now,
            now: Moments.now)
        #expect(stored)
        #expect(try ReaderView.rows(scratch).map(\.sellerID) == ["2001"])
    }

    @Test func noRefreshTokenEverReachesTokensDatabaseFiles() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        var refreshTokens: [Secret] = []
        var accessTokens: [Secret] = []
        func newPair() -> (Secret, Secret) {
            let pair = (Tokens.access(), Tokens.refresh())
            accessTokens.append(pair.0)
            refreshTokens.append(pair.1)
            return pair
        }
        var (access, refresh) = newPair()
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", access: access, refresh: refresh), nextRefreshAt: Moments.now,
            now: Moments.now)
        for _ in 0..<3 {
            let sent = refresh
            (access, refresh) = newPair()
            let stored = try await store.commitRotation(
                account: "1001", sent: sent, grant: makeGrant(seller: "1001", access: access, refresh: refresh),
                nextRefreshAt: Moments.now, now: Moments.now)
            #expect(stored)
        }
        let (importedAccess, importedRefresh) = newPair()
        _ = try await store.importAccounts(
            [
                ImportRecord(
                    sellerID: "2001", refreshToken: importedRefresh, accessToken: importedAccess,
                    expireTime: Moments.farFuture)
            ], now: Moments.now)
        _ = try await store.acquireLease(
            account: "2001", owner: "daemon", until: Moments.now + .seconds(60), now: Moments.now)
        try await store.recordFailure(
            account: "2001", owner: "daemon",
            failure: GatewayFailure(.transient, code: "HTTP503", message: "unavailable"),
            failedAttempts: 1, nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.markReauthRequired(
            account: "2001", sent: importedRefresh, reason: "IllegalRefreshToken", requestID: "r-9", now: Moments.now)

        func readersFiles() -> Data {
            scratch.listing().filter { $0.hasPrefix("tokens.db") }.reduce(into: Data()) { $0.append(scratch.bytes($1)) }
        }
        func keeperFiles() -> Data {
            scratch.listing().filter { $0.hasPrefix("keeper.db") }.reduce(into: Data()) { $0.append(scratch.bytes($1)) }
        }
        // While open (the newest pages are in -wal) and after close (checkpointed).
        for phase in ["open", "closed"] {
            if phase == "closed" { try await store.close() }
            let readers = readersFiles()
            for token in refreshTokens {
                #expect(!readers.contains(token.exposedValue), "refresh token \(token) in tokens.db files (\(phase))")
            }
            // The scan finds what is there: the current access tokens, and the
            // refresh tokens in keeper.db.
            #expect(readers.contains(access.exposedValue), "scan cannot find the access token (\(phase))")
            #expect(
                keeperFiles().contains(refresh.exposedValue),
                "scan cannot find the refresh token in keeper.db (\(phase))")
        }
    }

    @Test func eventsHoldNoToken() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        let (access, refresh, next) = (Tokens.access(), Tokens.refresh(), Tokens.refresh())
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", access: access, refresh: refresh), nextRefreshAt: Moments.now,
            now: Moments.now)
        _ = try await store.commitRotation(
            account: "1001", sent: refresh, grant: makeGrant(seller: "1001", refresh: next),
            nextRefreshAt: Moments.now,
            now: Moments.now)
        _ = try await store.markReauthRequired(
            account: "1001", sent: next, reason: "IllegalRefreshToken", requestID: "r-2", now: Moments.now)
        let events = try await store.recentEvents(limit: 100)
        #expect(events.map(\.kind) == [.reauthRequired, .refreshed, .enrolled])
        let text = events.map { "\($0.sellerID ?? "") \($0.kind) \($0.detail ?? "") \($0.requestID ?? "")" }.joined()
        for token in [access, refresh, next] {
            #expect(!text.contains(token.exposedValue))
        }
        // A fingerprint is allowed, and useful for telling rotations apart.
        #expect(text.contains(next.fingerprint))
    }

    // MARK: - Ordering and repair

    @Test func keeperCommitsEvenWhenTokensDatabaseIsLockedAndTheNextWriteRepairs() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open(options: .init(busyTimeout: .milliseconds(100)))
        let refresh = Tokens.refresh()
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", refresh: refresh), nextRefreshAt: Moments.now, now: Moments.now)
        let rowBefore = try ReaderView.rows(scratch)

        // Another writer holds tokens.db's write lock past the busy timeout.
        let blocker = try SQLiteConnection(path: scratch.tokensPath)
        try blocker.setPersistentWAL(true)
        try blocker.execute("BEGIN IMMEDIATE")
        let newAccess = Tokens.access()
        let stored = try await store.commitRotation(
            account: "1001", sent: refresh, grant: makeGrant(seller: "1001", access: newAccess),
            nextRefreshAt: Moments.now, now: Moments.now + .seconds(1))
        try blocker.execute("ROLLBACK")
        try blocker.close()

        // keeper.db has the rotation (durable first); tokens.db missed it.
        #expect(stored)
        #expect(try await store.account("1001")?.accessToken == newAccess)
        #expect(try ReaderView.rows(scratch) == rowBefore)

        // The next write brings the missed row in line too.
        _ = try await store.enroll(grant: makeGrant(seller: "1002"), nextRefreshAt: Moments.now, now: Moments.now)
        let rows = try ReaderView.rows(scratch)
        #expect(rows.map(\.sellerID) == ["1001", "1002"])
        #expect(Secret(rows[0].accessToken) == newAccess)
    }

    @Test func reopeningRebuildsRowsThatDisagreeWithKeeper() async throws {
        let scratch = try ScratchDirectory()
        var store = try await scratch.open()
        for seller in ["1001", "1002", "1003", "1004"] {
            _ = try await store.enroll(grant: makeGrant(seller: seller), nextRefreshAt: Moments.now, now: Moments.now)
        }
        try await store.close()
        let expected = try ReaderView.rows(scratch)

        try ReaderView.tamper(scratch.tokensPath, "DELETE FROM tokens WHERE seller_id = ?", ["1001"])
        try ReaderView.tamper(
            scratch.tokensPath, "UPDATE tokens SET access_token = ? WHERE seller_id = ?", ["forged", "1002"])
        try ReaderView.tamper(
            scratch.tokensPath, "UPDATE tokens SET status = ? WHERE seller_id = ?", ["disabled", "1003"])
        try ReaderView.tamper(scratch.tokensPath, "UPDATE tokens SET reauth_by = NULL WHERE seller_id = ?", ["1004"])
        try ReaderView.tamper(
            scratch.tokensPath,
            """
            INSERT INTO tokens (seller_id, access_token, expire_time, status, refreshed_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?)
            """,
            ["9999", "stray", 1, "active", 1, 1])
        #expect(try ReaderView.rows(scratch) != expected)

        store = try await scratch.open()
        #expect(try ReaderView.rows(scratch) == expected)
        let repaired = try await store.recentEvents(limit: 1)
        #expect(repaired.first?.kind == .readersRepaired)
        #expect(repaired.first?.detail == "rewrote 5 tokens.db rows from keeper.db")
        #expect(try await store.repairReadersDatabase() == 0)
        try await store.close()
    }

    /// The daemon's way: opened without the check, then checked a stretch
    /// at a time; stray rows before the first seller, between stretches and
    /// after the last are all found.
    @Test func checkingByStretchesRepairsWhatOpeningWouldHave() async throws {
        let scratch = try ScratchDirectory()
        var store = try await scratch.open()
        let sellers = (10..<40).map { "s\($0)" }
        for seller in sellers {
            _ = try await store.enroll(grant: makeGrant(seller: seller), nextRefreshAt: Moments.now, now: Moments.now)
        }
        try await store.close()
        let expected = try ReaderView.rows(scratch)
        try ReaderView.tamper(scratch.tokensPath, "DELETE FROM tokens WHERE seller_id IN ('s10', 's17', 's39')")
        try ReaderView.tamper(scratch.tokensPath, "UPDATE tokens SET access_token = 'forged' WHERE seller_id = 's23'")
        for stray in ["a-before", "s17x", "s24x", "z-after"] {
            try ReaderView.tamper(
                scratch.tokensPath,
                """
                INSERT INTO tokens (seller_id, access_token, expire_time, status, refreshed_at, updated_at)
                VALUES (?, 'stray', 1, 'active', 1, 1)
                """, [stray])
        }

        store = try await scratch.open(options: SQLiteAccountStore.Options(checkReadersAtOpen: false))
        #expect(try ReaderView.rows(scratch) != expected)
        #expect(try await store.checkReaders(stretch: 7) == 8)
        #expect(try ReaderView.rows(scratch) == expected)
        #expect(try await store.recentEvents(limit: 1).first?.detail == "rewrote 8 tokens.db rows from keeper.db")
        #expect(try await store.checkReaders(stretch: 7) == 0)
        try await store.close()
    }

    /// A deleted tokens.db is made anew and filled at open. The daemon opens
    /// the store without comparing tokens.db (it compares later, a stretch at
    /// a time): a tokens.db made anew is filled at open all the same, so
    /// readers never find it empty (seen failing as an end-to-end test that
    /// read the rows as soon as the daemon was ready).
    @Test(arguments: [true, false])
    func deletedTokensDatabaseIsRecreatedFromKeeper(checkReadersAtOpen: Bool) async throws {
        let scratch = try ScratchDirectory()
        var store = try await scratch.open()
        for seller in ["1001", "1002"] {
            _ = try await store.enroll(grant: makeGrant(seller: seller), nextRefreshAt: Moments.now, now: Moments.now)
        }
        try await store.close()
        let expected = try ReaderView.rows(scratch)
        for name in scratch.listing() where name.hasPrefix("tokens.db") {
            try FileManager.default.removeItem(atPath: scratch.file(name))
        }
        store = try await scratch.open(options: .init(checkReadersAtOpen: checkReadersAtOpen))
        #expect(try ReaderView.rows(scratch) == expected)
        try await store.close()
    }

    @Test func removedSellerLeavesTokensDatabase() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        try await store.remove(account: "1001", now: Moments.now)
        #expect(try ReaderView.rows(scratch).isEmpty)
        #expect(try await store.account("1001") == nil)
        await #expect(throws: SQLiteStoreError.unknownSeller("1001")) {
            try await store.remove(account: "1001", now: Moments.now)
        }
    }

    @Test func finalGrantSetsReauthByToTheAccessTokenExpiry() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        let expiry = Moments.farFuture
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", expireTime: expiry, refreshLifetime: .zero),
            nextRefreshAt: Moments.now, now: Moments.now)
        let row = try #require(try ReaderView.rows(scratch).first)
        #expect(row.values[9] == .integer(expiry.millisecondsSince1970))
        #expect(try await store.account("1001")?.isRefreshable == false)
    }
}

extension ReadersDatabaseTests {
    @Test func lockedTokensDatabaseAtOpenDoesNotStopTheStoreAndIsRepairedLater() async throws {
        let scratch = try ScratchDirectory()
        var store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        try await store.close()
        try ReaderView.tamper(scratch.tokensPath, "DELETE FROM tokens")

        let blocker = try SQLiteConnection(path: scratch.tokensPath)
        try blocker.setPersistentWAL(true)
        try blocker.execute("BEGIN IMMEDIATE")
        store = try await scratch.open(options: .init(busyTimeout: .milliseconds(50)))
        try blocker.execute("ROLLBACK")
        try blocker.close()
        #expect(try ReaderView.rows(scratch).isEmpty)

        _ = try await store.enroll(grant: makeGrant(seller: "1002"), nextRefreshAt: Moments.now, now: Moments.now)
        #expect(try ReaderView.rows(scratch).map(\.sellerID) == ["1001", "1002"])
        try await store.close()
    }
}
