import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// The refresher's writes that arrive together share one durable commit, and
/// one refused write does not take the others down with it.
@Suite struct GroupCommitTests {
    let scratch = try! ScratchDirectory()

    private func enroll(_ sellers: [String], in store: SQLiteAccountStore) async throws -> [String: Secret] {
        var tokens: [String: Secret] = [:]
        for seller in sellers {
            let refresh = Tokens.refresh(seller)
            _ = try await store.enroll(
                grant: makeGrant(seller: seller, refresh: refresh), nextRefreshAt: Moments.now, now: Moments.now)
            tokens[seller] = refresh
        }
        return tokens
    }

    /// Starts one rotation per seller, all queued behind a held commit.
    private func rotateTogether(
        _ sent: [String: Secret], in store: SQLiteAccountStore
    ) async throws -> (grants: [String: TokenGrant], results: [String: Result<Bool, any Error>]) {
        let grants = Dictionary(uniqueKeysWithValues: sent.keys.map { ($0, makeGrant(seller: $0)) })
        await store.holdGroupCommits()
        return try await withThrowingTaskGroup(of: (String, Result<Bool, any Error>).self) { group in
            for (seller, token) in sent {
                let grant = grants[seller]!
                group.addTask {
                    do {
                        let stored = try await store.commitRotation(
                            account: .seller(seller), sent: token, grant: grant,
                            nextRefreshAt: Moments.now + .seconds(60),
                            now: Moments.now)
                        return (seller, .success(stored))
                    } catch {
                        return (seller, .failure(error))
                    }
                }
            }
            await store.waitForQueuedWrites(sent.count)
            await store.releaseGroupCommits()
            var results: [String: Result<Bool, any Error>] = [:]
            for try await (seller, result) in group { results[seller] = result }
            return (grants, results)
        }
    }

    @Test func rotationsArrivingTogetherShareOneCommit() async throws {
        let store = try await scratch.open()
        let sellers = (1...40).map { "s\($0)" }
        let sent = try await enroll(sellers, in: store)
        let before = await store.groupCommits

        let (grants, results) = try await rotateTogether(sent, in: store)

        let after = await store.groupCommits
        #expect(after.commits - before.commits == 1)
        #expect(after.largest == 40)
        for seller in sellers {
            #expect(try results[seller]?.get() == true)
            let account = try #require(try await store.account(.seller(seller)))
            #expect(account.refreshToken == grants[seller]?.refreshToken)
            #expect(account.nextRefreshAt == Moments.now + .seconds(60))
        }
        // Readers see every new access token.
        let rows = try ReaderView.rows(scratch)
        // Compared apart, so that a failure prints no token.
        let readersHoldNewTokens =
            Set(rows.map(\.accessToken)) == Set(grants.values.compactMap { $0.accessToken?.exposedValue })
        #expect(readersHoldNewTokens, "the readers' rows hold every new access token")
        // One change sequence for the batch: the change feed reports all 40.
        let changed = try await store.changes(since: ChangeCursor(dataVersion: -1, sequence: 0)).changed
        #expect(Set(changed.map(\.key.sellerID)).isSuperset(of: sellers))
        try await store.close()
    }

    @Test func oneRefusedRotationDoesNotSinkTheOthers() async throws {
        let store = try await scratch.open()
        let sent = try await enroll(["a", "bad", "c"], in: store)
        // keeper.db refuses this one seller's rotation, as a constraint would.
        try ReaderView.tamper(
            scratch.keeperPath,
            """
            CREATE TRIGGER refuse_bad BEFORE UPDATE OF refresh_token ON accounts WHEN NEW.seller_id = 'bad'
            BEGIN SELECT RAISE(ABORT, 'refused for the test'); END
            """)

        let (grants, results) = try await rotateTogether(sent, in: store)

        #expect(await store.groupCommits.largest == 3)
        for seller in ["a", "c"] {
            #expect(try results[seller]?.get() == true)
            #expect(try await store.account(.seller(seller))?.refreshToken == grants[seller]?.refreshToken)
        }
        guard case .failure(let error) = results["bad"] else {
            Issue.record("the refused rotation was reported stored")
            return
        }
        #expect(StoreFailureScope.of(error) == .account)
        let bad = try #require(try await store.account("bad"))
        #expect(bad.refreshToken == sent["bad"])
        // Nothing of the refused write stayed: not its event, not its reader row.
        let events = try await store.recentEvents(limit: 50, sellerID: "bad")
        #expect(!events.contains { $0.kind == .refreshed })
        let readerTokens = try ReaderView.rows(scratch).filter { $0.sellerID == "bad" }.map(\.accessToken)
        let refusedTokenPublished = readerTokens.contains(grants["bad"]?.accessToken?.exposedValue ?? "-")
        #expect(!refusedTokenPublished, "the refused rotation's access token reached tokens.db")
        try await store.close()
    }

    @Test func aStoreWideFailureFailsTheWholeBatchAndStoresNothing() async throws {
        let store = try await scratch.open()
        let sent = try await enroll(["a", "b"], in: store)
        try await store.close()

        let (_, results) = try await rotateTogether(sent, in: store)

        for seller in ["a", "b"] {
            guard case .failure(let error) = results[seller] else {
                Issue.record("a write on a closed store was reported stored")
                continue
            }
            #expect(StoreFailureScope.of(error) == .store)
        }
    }
}
