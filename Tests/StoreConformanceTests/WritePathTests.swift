import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The write path's rules, the same test functions against every backend
/// (issue 15's cases): a rotation that commits leaves the seller active; a
/// lease is taken over only from an owner that is gone; only a lease's owner
/// records its failure; a commit that already landed is done, one that lost
/// the fence writes nothing.
@Suite(.conformancePostgres, .timeLimit(.minutes(1)))
struct WritePathTests {
    /// A store holding seller 1001 with `refresh`, enrolled a minute ago.
    private func enrolled(_ backend: Backend, refresh: Secret) async throws -> StoreUnderTest {
        let subject = try await backend.open()
        let now = currentTime()
        _ = try await subject.store.enroll(
            grant: makeGrant(seller: "1001", refresh: refresh, receivedAt: now - .seconds(60)),
            nextRefreshAt: now + .seconds(600), now: now - .seconds(60))
        return subject
    }

    // Case 1: while a rotated pair waited to be stored, its lease lapsed and
    // another process sent the old refresh token, was refused and marked the
    // seller. The commit fenced on the token that was sent lands afterwards.
    @Test(arguments: Backend.available)
    func rotationCommittedAfterTheSellerWasMarkedLeavesItActiveWithAnEvent(_ backend: Backend) async throws {
        let sent = makeToken("RT")
        let subject = try await enrolled(backend, refresh: sent)
        let store = subject.store
        let now = currentTime()
        let owner = try subject.liveOwner()
        guard
            case .acquired = try await store.acquireLease(
                account: "1001", owner: owner, until: now + .seconds(30), now: now)
        else {
            Issue.record("the lease was not taken")
            return
        }
        #expect(
            try await store.markReauthRequired(
                account: "1001", sent: sent, reason: "IllegalRefreshToken", requestID: "req-other", now: now))

        let rotated = makeToken("RT")
        let committed = try await store.commitRotation(
            account: "1001", sent: sent, grant: makeGrant(seller: "1001", refresh: rotated, receivedAt: now),
            nextRefreshAt: now + .seconds(600), now: now + .seconds(1))
        #expect(committed)
        let stored = try #require(try await store.account("1001"))
        #expect(stored.refreshToken == rotated)
        #expect(stored.status == .active)
        #expect(stored.statusReason == nil)
        let schedule = try await store.loadSchedule()
        #expect(schedule.map(\.key) == ["1001"])
        let kinds = try await store.events(EventQuery(sellerID: "1001", limit: 10)).map(\.kind)
        #expect(kinds.prefix(2).contains(.reactivated), "\(kinds)")
        #expect(kinds.contains(.reauthRequired))
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func rotationCommittedOnADisabledSellerStoresThePairAndKeepsItDisabled(_ backend: Backend) async throws {
        let sent = makeToken("RT")
        let subject = try await enrolled(backend, refresh: sent)
        let store = subject.store
        let now = currentTime()
        _ = try await store.setStatus(account: "1001", to: .disabled, nextRefreshAt: nil, now: now)
        let rotated = makeToken("RT")
        #expect(
            try await store.commitRotation(
                account: "1001", sent: sent, grant: makeGrant(seller: "1001", refresh: rotated, receivedAt: now),
                nextRefreshAt: now + .seconds(600), now: now))
        let stored = try #require(try await store.account("1001"))
        #expect(stored.refreshToken == rotated)
        #expect(stored.status == .disabled)
        try await subject.close()
    }

    // Case 1's other half: the lease lapsed because its owner could not
    // renew it, not because the owner is gone.
    @Test(arguments: Backend.available)
    func anExpiredLeaseOfALiveOwnerIsNotTakenOver(_ backend: Backend) async throws {
        let subject = try await enrolled(backend, refresh: makeToken("RT"))
        let store = subject.store
        let owner = try subject.liveOwner()
        let now = currentTime()
        // A lease of no length: lapsed at once, on either clock.
        _ = try await store.acquireLease(account: "1001", owner: owner, until: now, now: now)
        let later = now + .seconds(1)
        let result = try await store.acquireLease(
            account: "1001", owner: "cli-1@elsewhere/x", until: later + .seconds(60), now: later)
        guard case .busy(let lease) = result else {
            Issue.record("the lapsed lease of a live owner was taken over: \(result)")
            try await subject.close()
            return
        }
        #expect(lease.owner == owner)
        #expect(try await store.account("1001")?.lease?.owner == owner)
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func anExpiredLeaseOfAGoneOwnerIsTakenOverAndTheAnswerCountedLost(_ backend: Backend) async throws {
        let subject = try await enrolled(backend, refresh: makeToken("RT"))
        let store = subject.store
        let owner = try subject.goneOwner()
        let now = currentTime()
        _ = try await store.acquireLease(account: "1001", owner: owner, until: now, now: now)
        let later = now + .seconds(1)
        let result = try await store.acquireLease(
            account: "1001", owner: "cli-1@elsewhere/x", until: later + .seconds(60), now: later)
        guard case .acquired(let account) = result else {
            Issue.record("the lapsed lease of a gone owner was not taken over: \(result)")
            try await subject.close()
            return
        }
        #expect(account.lastAnswerLost)
        #expect(account.lease?.owner == "cli-1@elsewhere/x")
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func anUnexpiredLeaseOfAnotherOwnerIsBusyAndItsOwnerRenewsIt(_ backend: Backend) async throws {
        let subject = try await enrolled(backend, refresh: makeToken("RT"))
        let store = subject.store
        let now = currentTime()
        _ = try await store.acquireLease(account: "1001", owner: "a", until: now + .seconds(60), now: now)
        guard
            case .busy = try await store.acquireLease(account: "1001", owner: "b", until: now + .seconds(60), now: now)
        else {
            Issue.record("an unexpired lease was taken over")
            try await subject.close()
            return
        }
        guard
            case .acquired = try await store.acquireLease(
                account: "1001", owner: "a", until: now + .seconds(120), now: now)
        else {
            Issue.record("the owner could not renew its lease")
            try await subject.close()
            return
        }
        try await store.releaseLease(account: "1001", owner: "b")
        #expect(try await store.account("1001")?.lease?.owner == "a")
        try await store.releaseLease(account: "1001", owner: "a")
        #expect(try await store.account("1001")?.lease == nil)
        #expect(
            try await store.acquireLease(account: "9999", owner: "a", until: now + .seconds(60), now: now) == .notFound
        )
        try await subject.close()
    }

    // Case 2.
    @Test(arguments: Backend.available)
    func aFailureIsRecordedOnlyByTheLeasesOwner(_ backend: Backend) async throws {
        let subject = try await enrolled(backend, refresh: makeToken("RT"))
        let store = subject.store
        let now = currentTime()
        _ = try await store.acquireLease(account: "1001", owner: "taker", until: now + .seconds(60), now: now)
        let recorded = try await store.recordFailure(
            account: "1001", owner: "lapsed", failure: transientFailure, failedAttempts: 3,
            nextRefreshAt: now + .seconds(5), now: now)
        #expect(recorded == false)
        let untouched = try #require(try await store.account("1001"))
        #expect(untouched.lease?.owner == "taker")
        #expect(untouched.failedAttempts == 0)
        #expect(untouched.lastError == nil)

        #expect(
            try await store.recordFailure(
                account: "1001", owner: "taker", failure: transientFailure, failedAttempts: 1,
                nextRefreshAt: now + .seconds(5), now: now))
        let failed = try #require(try await store.account("1001"))
        #expect(failed.lease == nil)
        #expect(failed.failedAttempts == 1)
        #expect(failed.lastError == "Timeout: no answer")
        #expect(failed.nextRefreshAt == now + .seconds(5))
        let kinds = try await store.events(EventQuery(sellerID: "1001", limit: 10)).map(\.kind)
        #expect(kinds.filter { $0 == .refreshFailed }.count == 1)
        try await subject.close()
    }

    // Case 8's ground: a commit whose answer was lost (a timeout) and is
    // retried finds its own pair stored and is done; a commit that lost the
    // fence to another token writes nothing and says so.
    @Test(arguments: Backend.available)
    func aCommitThatAlreadyLandedIsDoneAndOneThatLostTheFenceWritesNothing(_ backend: Backend) async throws {
        let sent = makeToken("RT")
        let subject = try await enrolled(backend, refresh: sent)
        let store = subject.store
        let now = currentTime()
        let grant = makeGrant(seller: "1001", refresh: makeToken("RT"), receivedAt: now)
        #expect(
            try await store.commitRotation(
                account: "1001", sent: sent, grant: grant, nextRefreshAt: now + .seconds(600), now: now))
        #expect(
            try await store.commitRotation(
                account: "1001", sent: sent, grant: grant, nextRefreshAt: now + .seconds(600), now: now))
        let refreshed = try await store.events(EventQuery(sellerID: "1001", kind: .refreshed, limit: 10))
        #expect(refreshed.count == 1)

        // Re-authorized meanwhile: another token stands.
        let reauthorized = makeToken("RT")
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", refresh: reauthorized, receivedAt: now),
            nextRefreshAt: now + .seconds(600),
            now: now)
        let late = makeGrant(seller: "1001", refresh: makeToken("RT"), receivedAt: now)
        #expect(
            try await store.commitRotation(
                account: "1001", sent: sent, grant: late, nextRefreshAt: now + .seconds(600), now: now) == false)
        #expect(try await store.account("1001")?.refreshToken == reauthorized)
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func aSellerIsMarkedOnlyOverTheTokenThatWasSent(_ backend: Backend) async throws {
        let sent = makeToken("RT")
        let subject = try await enrolled(backend, refresh: sent)
        let store = subject.store
        let now = currentTime()
        #expect(
            try await store.markReauthRequired(
                account: "1001", sent: makeToken("RT"), reason: "IllegalRefreshToken", requestID: nil, now: now)
                == false)
        #expect(try await store.account("1001")?.status == .active)
        #expect(
            try await store.markReauthRequired(
                account: "1001", sent: sent, reason: "IllegalRefreshToken", requestID: "req-9", now: now))
        let marked = try #require(try await store.account("1001"))
        #expect(marked.status == .reauthRequired)
        #expect(marked.statusReason == "IllegalRefreshToken")
        #expect(try await store.loadSchedule().isEmpty)
        #expect(try await store.countByStatus()[.reauthRequired] == 1)
        try await subject.close()
    }
}
