import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// The ``AccountStore`` contract the scheduler relies on: leases, rotations
/// that commit only over the refresh token that was sent, failures, marking
/// accounts dead only on the token that was sent.
@Suite struct AccountStoreTests {
    let scratch: ScratchDirectory
    let refresh = Tokens.refresh("stored")

    init() throws {
        scratch = try ScratchDirectory()
    }

    private func storeWithSeller(_ seller: String = "1001") async throws -> SQLiteAccountStore {
        let store = try await scratch.open()
        _ = try await store.enroll(
            grant: makeGrant(seller: seller, refresh: refresh), nextRefreshAt: Moments.now + .seconds(60),
            now: Moments.now)
        return store
    }

    // MARK: - Leases

    @Test func leaseIsAcquiredAndReturnsTheStoredAccount() async throws {
        let store = try await storeWithSeller()
        let until = Moments.now + .seconds(120)
        let result = try await store.acquireLease(account: "1001", owner: "daemon", until: until, now: Moments.now)
        guard case .acquired(let account) = result else {
            Issue.record("expected acquired, got \(result)")
            return
        }
        #expect(account.refreshToken == refresh)
        #expect(account.lease == Lease(owner: "daemon", expiresAt: until))
        #expect(try await store.account("1001")?.lease == Lease(owner: "daemon", expiresAt: until))
        try await store.close()
    }

    @Test func unexpiredLeaseOfAnotherOwnerIsBusy() async throws {
        let store = try await storeWithSeller()
        let until = Moments.now + .seconds(120)
        _ = try await store.acquireLease(account: "1001", owner: "daemon", until: until, now: Moments.now)
        let result = try await store.acquireLease(
            account: "1001", owner: "cli", until: Moments.now + .seconds(300), now: Moments.now + .seconds(119))
        #expect(result == .busy(Lease(owner: "daemon", expiresAt: until)))
        // The busy attempt changed nothing.
        #expect(try await store.account("1001")?.lease == Lease(owner: "daemon", expiresAt: until))
        try await store.close()
    }

    @Test func holderCanRenewItsOwnLease() async throws {
        let store = try await storeWithSeller()
        _ = try await store.acquireLease(
            account: "1001", owner: "daemon", until: Moments.now + .seconds(10), now: Moments.now)
        let later = Moments.now + .seconds(300)
        let result = try await store.acquireLease(
            account: "1001", owner: "daemon", until: later, now: Moments.now + .seconds(5))
        guard case .acquired(let account) = result else {
            Issue.record("expected acquired, got \(result)")
            return
        }
        #expect(account.lease?.expiresAt == later)
        try await store.close()
    }

    @Test func expiredLeaseCanBeTakenByAnotherOwner() async throws {
        let store = try await storeWithSeller()
        _ = try await store.acquireLease(
            account: "1001", owner: "crashed", until: Moments.now + .seconds(10), now: Moments.now)
        let result = try await store.acquireLease(
            account: "1001", owner: "daemon", until: Moments.now + .seconds(100), now: Moments.now + .seconds(10))
        guard case .acquired(let account) = result else {
            Issue.record("expected acquired, got \(result)")
            return
        }
        #expect(account.lease?.owner == "daemon")
        try await store.close()
    }

    @Test func leaseOnUnknownSellerIsNotFound() async throws {
        let store = try await scratch.open()
        let result = try await store.acquireLease(
            account: "nobody", owner: "daemon", until: Moments.now + .seconds(10), now: Moments.now)
        #expect(result == .notFound)
        try await store.close()
    }

    @Test func onlyTheHolderReleasesTheLease() async throws {
        let store = try await storeWithSeller()
        let lease = Lease(owner: "daemon", expiresAt: Moments.now + .seconds(100))
        _ = try await store.acquireLease(account: "1001", owner: lease.owner, until: lease.expiresAt, now: Moments.now)
        try await store.releaseLease(account: "1001", owner: "cli")
        #expect(try await store.account("1001")?.lease == lease)
        try await store.releaseLease(account: "1001", owner: "daemon")
        #expect(try await store.account("1001")?.lease == nil)
        try await store.close()
    }

    @Test func leaseReturnsWhatAnotherProcessCommittedMeanwhile() async throws {
        let daemon = try await storeWithSeller()
        let cli = try await scratch.open()
        let rotated = Tokens.refresh("cli")
        #expect(
            try await cli.commitRotation(
                account: "1001", sent: refresh, grant: makeGrant(seller: "1001", refresh: rotated),
                nextRefreshAt: Moments.now + .seconds(3600), now: Moments.now))
        let result = try await daemon.acquireLease(
            account: "1001", owner: "daemon", until: Moments.now + .seconds(100), now: Moments.now)
        guard case .acquired(let account) = result else {
            Issue.record("expected acquired, got \(result)")
            return
        }
        #expect(account.refreshToken == rotated)
        #expect(account.nextRefreshAt == Moments.now + .seconds(3600))
        try await cli.close()
        try await daemon.close()
    }

    @Test func leaseHeldInAnotherProcessIsBusyHere() async throws {
        let daemon = try await storeWithSeller()
        let cli = try await scratch.open()
        _ = try await cli.acquireLease(
            account: "1001", owner: "cli", until: Moments.now + .seconds(100), now: Moments.now)
        let result = try await daemon.acquireLease(
            account: "1001", owner: "daemon", until: Moments.now + .seconds(100), now: Moments.now)
        #expect(result == .busy(Lease(owner: "cli", expiresAt: Moments.now + .seconds(100))))
        try await cli.close()
        try await daemon.close()
    }

    // MARK: - Rotations

    @Test func rotationOverTheSentTokenIsCommitted() async throws {
        let store = try await storeWithSeller()
        _ = try await store.acquireLease(
            account: "1001", owner: "daemon", until: Moments.now + .seconds(100), now: Moments.now)
        try await store.recordFailure(
            account: "1001", owner: "daemon",
            failure: GatewayFailure(.transient, code: "HTTP503", message: "unavailable"),
            failedAttempts: 2, nextRefreshAt: Moments.now, now: Moments.now)
        let (access, rotated) = (Tokens.access(), Tokens.refresh("new"))
        let receivedAt = Moments.now + .seconds(5)
        let grant = makeGrant(
            seller: "1001", access: access, refresh: rotated, receivedAt: receivedAt,
            profile: SellerProfile(locale: "ru_RU"), requestID: "req-rotate")
        let next = Moments.now + .seconds(7200)
        #expect(
            try await store.commitRotation(
                account: "1001", sent: refresh, grant: grant, nextRefreshAt: next, now: receivedAt))

        let account = try #require(try await store.account("1001"))
        #expect(account.refreshToken == rotated)
        #expect(account.accessToken == access)
        #expect(account.nextRefreshAt == next)
        #expect(account.failedAttempts == 0)
        #expect(account.lastError == nil)
        #expect(account.lease == nil)
        #expect(account.lastRequestID == "req-rotate")
        #expect(account.refreshedAt == receivedAt)
        #expect(account.accessTokenLifetime == .seconds(86_400))
        // The profile keeps what the refresh answer left out.
        #expect(account.profile == SellerProfile(userNick: "nick", locale: "ru_RU"))
        #expect(Secret(try ReaderView.rows(scratch)[0].accessToken) == access)
        try await store.close()
    }

    @Test func rotationOverAStaleTokenWritesNothing() async throws {
        let store = try await storeWithSeller()
        let before = try await store.account("1001")
        let readersBefore = try ReaderView.rows(scratch)
        let eventsBefore = try await store.recentEvents(limit: 100)
        let cursor = try await store.changes(since: nil).cursor

        let stored = try await store.commitRotation(
            account: "1001", sent: Tokens.refresh("stale"), grant: makeGrant(seller: "1001"),
            nextRefreshAt: Moments.now, now: Moments.now + .seconds(1))

        #expect(!stored)
        #expect(try await store.account("1001") == before)
        #expect(try ReaderView.rows(scratch) == readersBefore)
        #expect(try await store.recentEvents(limit: 100) == eventsBefore)
        #expect(try await store.changes(since: cursor).changed.isEmpty)
        try await store.close()
    }

    @Test func rotationForARemovedSellerWritesNothing() async throws {
        let store = try await storeWithSeller()
        try await store.remove(account: "1001", now: Moments.now)
        #expect(
            !(try await store.commitRotation(
                account: "1001", sent: refresh, grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now,
                now: Moments.now)))
        #expect(try await store.account("1001") == nil)
        try await store.close()
    }

    @Test func rotationOfADisabledAccountKeepsItDisabled() async throws {
        let store = try await storeWithSeller()
        _ = try await store.setStatus(account: "1001", to: .disabled, now: Moments.now)
        #expect(
            try await store.commitRotation(
                account: "1001", sent: refresh, grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now,
                now: Moments.now))
        let account = try #require(try await store.account("1001"))
        #expect(account.status == .disabled)
        #expect(account.statusReason == StatusReason.disabledByOperator)
        try await store.close()
    }

    // MARK: - Failures and re-authorization

    @Test func failureIsRecordedAndTheAccountStaysActive() async throws {
        let store = try await storeWithSeller()
        let readersBefore = try ReaderView.rows(scratch)
        _ = try await store.acquireLease(
            account: "1001", owner: "daemon", until: Moments.now + .seconds(100), now: Moments.now)
        let retryAt = Moments.now + .seconds(30)
        try await store.recordFailure(
            account: "1001", owner: "daemon",
            failure: GatewayFailure(.transient, code: "ServiceTimeout", message: "timed out", requestID: "r-7"),
            failedAttempts: 3, nextRefreshAt: retryAt, now: Moments.now + .seconds(1))
        let account = try #require(try await store.account("1001"))
        #expect(account.status == .active)
        #expect(account.failedAttempts == 3)
        #expect(account.lastError == "ServiceTimeout: timed out")
        #expect(account.lastRequestID == "r-7")
        #expect(account.nextRefreshAt == retryAt)
        #expect(account.lease == nil)
        #expect(try ReaderView.rows(scratch) == readersBefore)
        #expect(try await store.recentEvents(limit: 1).first?.kind == .refreshFailed)
        try await store.close()
    }

    @Test func markingReauthRequiredOverAStaleTokenWritesNothing() async throws {
        let store = try await storeWithSeller()
        let before = try await store.account("1001")
        let marked = try await store.markReauthRequired(
            account: "1001", sent: Tokens.refresh("stale"), reason: "IllegalRefreshToken", requestID: "r-1",
            now: Moments.now + .seconds(1))
        #expect(!marked)
        #expect(try await store.account("1001") == before)
        #expect(try ReaderView.validSellers(scratch) == ["1001"])
        try await store.close()
    }

    @Test func markingReauthRequiredOverTheSentTokenTakesTheAccountOutOfService() async throws {
        let store = try await storeWithSeller()
        _ = try await store.acquireLease(
            account: "1001", owner: "daemon", until: Moments.now + .seconds(100), now: Moments.now)
        let marked = try await store.markReauthRequired(
            account: "1001", sent: refresh, reason: "IllegalRefreshToken", requestID: "r-dead", now: Moments.now)
        #expect(marked)
        let account = try #require(try await store.account("1001"))
        #expect(account.status == .reauthRequired)
        #expect(account.statusReason == "IllegalRefreshToken")
        #expect(account.lastRequestID == "r-dead")
        #expect(account.lease == nil)
        #expect(try await store.loadSchedule().isEmpty)
        let row = try #require(try ReaderView.rows(scratch).first)
        #expect(row.status == "reauth_required")
        #expect(row.values[11] == .text("IllegalRefreshToken"))
        #expect(try ReaderView.validSellers(scratch).isEmpty)
        let event = try #require(try await store.recentEvents(limit: 1).first)
        #expect(event.kind == .reauthRequired && event.requestID == "r-dead" && event.sellerID == "1001")

        // Enabling cannot revive it; a new authorization can.
        await #expect(throws: SQLiteStoreError.needsReauthorization(sellerID: "1001")) {
            try await store.setStatus(account: "1001", to: .active, now: Moments.now)
        }
        let revived = try await store.enroll(
            grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now + .seconds(60), now: Moments.now)
        #expect(revived.status == .active && revived.statusReason == nil)
        #expect(try ReaderView.validSellers(scratch) == ["1001"])
        try await store.close()
    }

    // MARK: - Schedule and status

    @Test func scheduleHoldsActiveAccountsWithTheirDeadlines() async throws {
        let store = try await scratch.open()
        _ = try await store.enroll(
            grant: makeGrant(seller: "a"), nextRefreshAt: Moments.now + .seconds(10), now: Moments.now)
        _ = try await store.enroll(
            grant: makeGrant(seller: "b"), nextRefreshAt: Moments.now + .seconds(20), now: Moments.now)
        _ = try await store.enroll(
            grant: makeGrant(seller: "c"), nextRefreshAt: Moments.now + .seconds(30), now: Moments.now)
        _ = try await store.setStatus(account: "b", to: .disabled, now: Moments.now)
        let schedule = try await store.loadSchedule().sorted { $0.key < $1.key }
        #expect(
            schedule.deadlines == [
                ScheduledAccount("a", due: Moments.now + .seconds(10)),
                ScheduledAccount("c", due: Moments.now + .seconds(30)),
            ])
        try await store.close()
    }

    @Test func disablingAndEnablingChangeStatusAndDeadline() async throws {
        let store = try await storeWithSeller()
        let disabled = try await store.setStatus(account: "1001", to: .disabled, now: Moments.now)
        #expect(disabled.status == .disabled && disabled.statusReason == StatusReason.disabledByOperator)
        #expect(try ReaderView.rows(scratch).first?.status == "disabled")
        let due = Moments.now + .seconds(1)
        let enabled = try await store.setStatus(account: "1001", to: .active, nextRefreshAt: due, now: Moments.now)
        #expect(enabled.status == .active && enabled.statusReason == nil && enabled.nextRefreshAt == due)
        #expect(try ReaderView.rows(scratch).first?.status == "active")
        await #expect(throws: SQLiteStoreError.unknownSeller("nobody")) {
            try await store.setStatus(account: "nobody", to: .disabled, now: Moments.now)
        }
        let kinds = try await store.recentEvents(limit: 2, sellerID: "1001").map(\.kind)
        #expect(kinds == [.enabled, .disabled])
        try await store.close()
    }

    @Test func closedStoreRefusesWork() async throws {
        let store = try await scratch.open()
        try await store.close()
        await #expect(throws: SQLiteStoreError.closed) { try await store.loadSchedule() }
        await #expect(throws: SQLiteStoreError.closed) {
            try await store.enroll(grant: makeGrant(seller: "1"), nextRefreshAt: Moments.now, now: Moments.now)
        }
    }
}

@Suite struct StoreExecutorTests {
    @Test func storeWorkRunsOnItsOwnDispatchQueue() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        #expect(await store.isRunningOnOwnQueue())
        try await store.close()
    }
}

@Suite struct AccountPagingTests {
    let scratch = try! ScratchDirectory()

    @Test func pagesCoverEveryAccountOnceInOrder() async throws {
        let store = try await scratch.open()
        let records = (0..<2_345).map { index in
            ImportRecord(sellerID: String(format: "%06d", (index * 7919) % 1_000_000), refreshToken: Tokens.refresh())
        }
        _ = try await store.importAccounts(records, now: Moments.now)
        var seen: [String] = []
        var last: String?
        while true {
            let page = try await store.accounts(app: nil, after: last.map(AccountKey.seller), limit: 1000)
            guard let final = page.last else { break }
            #expect(page.count <= 1000)
            seen += page.map(\.sellerID)
            last = final.sellerID
        }
        #expect(seen == records.map(\.sellerID).sorted())
        try await store.close()
    }
}
