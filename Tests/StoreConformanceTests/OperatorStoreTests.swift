import Foundation
import PostgresStore
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The operator's loop on every backend (``OperatorStore``): the outbox and
/// its deliveries, the re-authorization warning and `reactivated`, the
/// callback's key and states, the fleet's figures and lists, and pruning.
/// The same test functions against SQLite and PostgreSQL; SQLite's meaning
/// is the reference.
@Suite(.conformancePostgres, .timeLimit(.minutes(1)))
struct OperatorStoreTests {
    private static let day: Duration = .seconds(86_400)

    private func grant(_ seller: String, refresh: Secret = makeToken("RT"), at: Timestamp, validUntil: Timestamp? = nil)
        -> TokenGrant
    {
        var grant = makeGrant(seller: seller, refresh: refresh, receivedAt: at)
        if let validUntil { grant.refreshTokenValidTime = validUntil }
        return grant
    }

    // MARK: - The outbox

    @Test(arguments: Backend.available)
    func onlyTheNotifiedKindsAreQueuedWithTheirEvent(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let now = currentTime()
        let sent = makeToken("RT")
        _ = try await store.enroll(
            grant: grant("1001", refresh: sent, at: now), nextRefreshAt: now + .seconds(600), now: now)
        #expect(try await store.latestOutboxEventID() == 0, "enrolled is not notified")
        let rotated = makeToken("RT")
        #expect(
            try await store.commitRotation(
                account: "1001", sent: sent, grant: grant("1001", refresh: rotated, at: now),
                nextRefreshAt: now + .seconds(600), now: now))
        #expect(try await store.latestOutboxEventID() == 0, "refreshed is not notified")

        #expect(
            try await store.markReauthRequired(
                account: "1001", sent: rotated, reason: "IllegalRefreshToken", requestID: "req-1", now: now))
        let marked = try #require(try await store.events(EventQuery(kind: .reauthRequired)).first)
        #expect(try await store.latestOutboxEventID() == marked.id, "queued with the event")

        for kind in EventKind.all {
            try await store.appendEvent(kind, sellerID: nil, detail: "kind \(kind)", requestID: nil, at: now)
        }
        let lastNotified = try #require(EventKind.all.last { EventKind.notified.contains($0) })
        let newestNotified = try #require(
            try await store.events(EventQuery(kind: lastNotified, limit: 1)).first)
        #expect(try await store.latestOutboxEventID() == newestNotified.id)

        let taken = try await store.enqueueDeliveries(channel: "hook", oldest: now - .seconds(60), now: now)
        #expect(taken == 1 + EventKind.notified.count)
        let due = try await store.dueDeliveries(channel: "hook", now: now, limit: 50)
        #expect(due.map(\.event.kind) == [.reauthRequired] + EventKind.all.filter { EventKind.notified.contains($0) })
        #expect(due.dropFirst().allSatisfy { $0.event.detail == "kind \($0.event.kind)" })
        #expect(due.first?.event.sellerID == "1001")
        #expect(due.first?.event.requestID == "req-1")
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func aChannelTakesOnEventsFromOldestAndEachOnce(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let now = currentTime()
        try await store.appendEvent(.degraded, sellerID: nil, detail: "old", requestID: nil, at: now - Self.day * 3)
        try await store.appendEvent(.degraded, sellerID: nil, detail: "storage: full", requestID: nil, at: now)
        try await store.appendEvent(
            .recovered, sellerID: nil, detail: "storage: full", requestID: nil, at: now + .seconds(1))
        let oldest = now - Self.day
        #expect(
            try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: now) == 2,
            "not the event older than the window")
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: now) == 0)
        #expect(try await store.enqueueDeliveries(channel: "command", oldest: oldest, now: now) == 2)

        // A channel configured again later gets no stale event, and the new ones.
        try await store.appendEvent(
            .degraded, sellerID: nil, detail: "configuration: late", requestID: nil, at: now - Self.day * 3)
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: now) == 0)
        let later = now + .seconds(2)
        try await store.appendEvent(.degraded, sellerID: nil, detail: "fresh", requestID: nil, at: later)
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: later) == 1)

        let due = try await store.dueDeliveries(channel: "webhook", now: later, limit: 50)
        #expect(due.map(\.event.detail) == ["storage: full", "storage: full", "fresh"])
        #expect(due.map(\.takenAt) == [now, now, later])
        #expect(due.allSatisfy { $0.attempts == 0 && $0.payload == nil && $0.reauthBy == nil })
        #expect(due[2].retryWindowStart == later)
        #expect(try await store.nextDeliveryAttempt(channel: "nowhere") == nil)
        #expect(try await store.dueDeliveries(channel: "nowhere", now: later, limit: 50).isEmpty)
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func deliveriesAreRetriedDeliveredOrAbandonedAndCounted(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let now = currentTime()
        let sent = makeToken("RT")
        let validity = now + Self.day * 30
        _ = try await store.enroll(
            grant: grant("1001", refresh: sent, at: now, validUntil: validity), nextRefreshAt: now, now: now)
        #expect(
            try await store.markReauthRequired(
                account: "1001", sent: sent, reason: "IllegalRefreshToken", requestID: nil, now: now))
        try await store.appendEvent(.degraded, sellerID: nil, detail: "storage: full", requestID: nil, at: now)
        try await store.appendEvent(.recovered, sellerID: nil, detail: "storage: full", requestID: nil, at: now)
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: now - Self.day, now: now) == 3)

        let due = try await store.dueDeliveries(channel: "webhook", now: now, limit: 50)
        #expect(due.map(\.event.kind) == [.reauthRequired, .degraded, .recovered])
        #expect(due[0].reauthBy == validity, "the seller's re-authorization deadline")
        #expect(due[1].reauthBy == nil)
        for delivery in due {
            #expect(try await store.outboxUID(eventID: delivery.event.id) == delivery.uid)
        }
        // Asked again before anything is recorded, the same store gets the same deliveries.
        #expect(
            try await store.dueDeliveries(channel: "webhook", now: now, limit: 50).map(\.event.id)
                == due.map(\.event.id))
        #expect(
            try await store.dueDeliveries(channel: "webhook", now: now, limit: 1).map(\.event.id) == [due[0].event.id])

        try await store.recordDelivery(eventID: due[0].event.id, channel: "webhook", result: .delivered, now: now)
        let retryAt = now + .seconds(30)
        try await store.recordDelivery(
            eventID: due[1].event.id, channel: "webhook", result: .failed(error: "HTTP 503", retryAt: retryAt), now: now
        )
        try await store.recordDelivery(
            eventID: due[2].event.id, channel: "webhook", result: .abandoned(error: "HTTP 410"), now: now)
        #expect(try await store.dueDeliveries(channel: "webhook", now: now, limit: 50).isEmpty)
        #expect(try await store.nextDeliveryAttempt(channel: "webhook") == retryAt)
        #expect(try await store.deliveryCounts() == ["webhook": DeliveryCounts(pending: 1, abandoned: 1, delivered: 1)])

        let retried = try await store.dueDeliveries(channel: "webhook", now: retryAt, limit: 50)
        #expect(retried.map(\.event.id) == [due[1].event.id])
        #expect(retried.map(\.attempts) == [1])
        #expect(retried.first?.takenAt == now)
        try await store.recordDelivery(eventID: due[1].event.id, channel: "webhook", result: .delivered, now: retryAt)
        #expect(try await store.nextDeliveryAttempt(channel: "webhook") == nil)
        #expect(try await store.dueDeliveries(channel: "webhook", now: retryAt + Self.day, limit: 50).isEmpty)
        #expect(try await store.deliveryCounts() == ["webhook": DeliveryCounts(pending: 0, abandoned: 1, delivered: 2)])
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func theFirstStoredPayloadWinsAndTheUIDStays(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let other = try await subject.openAnother()
        let now = currentTime()
        try await store.appendEvent(.degraded, sellerID: nil, detail: "a", requestID: nil, at: now)
        try await store.appendEvent(.recovered, sellerID: nil, detail: "a", requestID: nil, at: now)
        try await store.appendEvent(.enabled, sellerID: "1001", detail: nil, requestID: nil, at: now)
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: now - Self.day, now: now) == 2)
        let due = try await store.dueDeliveries(channel: "webhook", now: now, limit: 50)
        let first = due[0].event.id
        let second = due[1].event.id
        #expect(try await store.storePayload(eventID: first, payload: "{\"a\":1}") == "{\"a\":1}")
        #expect(try await store.storePayload(eventID: first, payload: "{\"b\":2}") == "{\"a\":1}", "rendered once")
        #expect(try await other.store.storePayload(eventID: first, payload: "{\"c\":3}") == "{\"a\":1}")
        #expect(try await store.dueDeliveries(channel: "webhook", now: now, limit: 50).first?.payload == "{\"a\":1}")

        // Two processes (nodes) rendering at once: both send the one stored.
        async let fromStore = store.storePayload(eventID: second, payload: "one")
        async let fromOther = other.store.storePayload(eventID: second, payload: "two")
        let (stored, otherStored) = try await (fromStore, fromOther)
        #expect(stored == otherStored)
        #expect(["one", "two"].contains(stored))

        // The uid: random, 32 hex digits, the same whoever asks, one per event.
        let uid = try #require(try await store.outboxUID(eventID: first))
        #expect(uid.count == 32 && uid.allSatisfy(\.isHexDigit))
        #expect(try await store.outboxUID(eventID: first) == uid)
        #expect(try await other.store.outboxUID(eventID: first) == uid)
        #expect(due[0].uid == uid)
        #expect(try await store.outboxUID(eventID: second) != uid)
        let enabled = try #require(try await store.events(EventQuery(kind: .enabled)).first)
        #expect(try await store.outboxUID(eventID: enabled.id) == nil, "not an outbox event")
        #expect(try await store.outboxUID(eventID: 987_654_321) == nil)
        try await other.close()
        try await subject.close()
    }

    // MARK: - Re-authorization

    @Test(arguments: Backend.available)
    func reauthDueIsRaisedOncePerRefreshToken(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let now = currentTime()
        let week = Self.day * 7
        let ends = now + Self.day * 10
        let sent = makeToken("RT")
        _ = try await store.enroll(
            grant: grant("1", refresh: sent, at: now, validUntil: ends), nextRefreshAt: now + .seconds(600), now: now)
        _ = try await store.enroll(
            grant: grant("2", at: now, validUntil: now + Self.day * 60), nextRefreshAt: now + .seconds(600), now: now)
        #expect(try await store.raiseReauthDue(horizon: now + week, now: now, limit: 100).isEmpty)

        let later = now + Self.day * 4
        #expect(try await store.raiseReauthDue(horizon: later + week, now: later, limit: 100) == ["1"])
        #expect(try await store.raiseReauthDue(horizon: later + week, now: later, limit: 100).isEmpty, "once per token")
        let warned = try #require(try await store.events(EventQuery(sellerID: "1", kind: .reauthDue)).first)
        #expect(warned.detail == "the refresh token ends \(ends)")
        #expect(warned.at == later)
        #expect(try await store.latestOutboxEventID() == warned.id, "queued")

        // A rotation that keeps the validity does not warn again.
        let rotated = makeToken("RT")
        #expect(
            try await store.commitRotation(
                account: "1", sent: sent, grant: grant("1", refresh: rotated, at: later, validUntil: ends),
                nextRefreshAt: later + .seconds(600), now: later))
        #expect(try await store.raiseReauthDue(horizon: later + week, now: later, limit: 100).isEmpty)

        // Authorized again: the new token ends far away; later its window is entered anew.
        _ = try await store.enroll(
            grant: grant("1", at: later, validUntil: later + Self.day * 30), nextRefreshAt: later + .seconds(600),
            now: later)
        #expect(try await store.raiseReauthDue(horizon: later + week, now: later, limit: 100).isEmpty)
        let muchLater = later + Self.day * 25
        #expect(try await store.raiseReauthDue(horizon: muchLater + week, now: muchLater, limit: 100) == ["1"])
        #expect(try await store.events(EventQuery(sellerID: "1", kind: .reauthDue)).count == 2)
        #expect(try await store.fleetFigures(reauthHorizon: muchLater + week).reauthDue == 1)

        // Two processes (nodes) raising at once warn each seller once.
        for index in 0..<40 {
            _ = try await store.enroll(
                grant: grant("3\(index)", at: now, validUntil: now + Self.day * 10), nextRefreshAt: now, now: now)
        }
        let other = try await subject.openAnother()
        async let fromStore = store.raiseReauthDue(horizon: later + week, now: later, limit: 7)
        async let fromOther = other.store.raiseReauthDue(horizon: later + week, now: later, limit: 7)
        var raised = try await fromStore + fromOther
        while true {
            let more = try await other.store.raiseReauthDue(horizon: later + week, now: later, limit: 7)
            if more.isEmpty { break }
            raised += more
        }
        #expect(raised.count == 40)
        #expect(Set(raised).count == 40)
        #expect(try await store.events(EventQuery(kind: .reauthDue, limit: 1000)).count == 42)
        try await other.close()
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func aReauthRequiredSellerStoredAgainIsReactivatedOnceWhateverWroteIt(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let now = currentTime()
        var current = makeToken("RT")
        _ = try await store.enroll(grant: grant("1001", refresh: current, at: now), nextRefreshAt: now, now: now)
        func mark(_ reason: String, at moment: Timestamp) async throws {
            #expect(
                try await store.markReauthRequired(
                    account: "1001", sent: current, reason: reason, requestID: nil, now: moment))
        }
        func reactivated() async throws -> [StoredEvent] {
            try await store.events(EventQuery(sellerID: "1001", kind: .reactivated, limit: 100))
        }

        // add --code (enroll).
        try await mark("RotationLost", at: now)
        current = makeToken("RT")
        _ = try await store.enroll(
            grant: grant("1001", refresh: current, at: now), nextRefreshAt: now, now: now + .seconds(5))
        var events = try await reactivated()
        #expect(events.count == 1)
        #expect(events.first?.detail == "was RotationLost")
        #expect(events.first?.at == now + .seconds(5))
        #expect(try await store.account("1001")?.status == .active)
        #expect(try await store.latestOutboxEventID() == events.first?.id, "queued")
        // Enrolling an active seller again is no reactivation.
        current = makeToken("RT")
        _ = try await store.enroll(grant: grant("1001", refresh: current, at: now), nextRefreshAt: now, now: now)
        #expect(try await reactivated().count == 1)

        // import.
        try await mark("IllegalRefreshToken", at: now)
        current = makeToken("RT")
        let summary = try await store.importAccounts(
            [ImportRecord(sellerID: "1001", refreshToken: current)], replace: false, batchSize: nil, now: now)
        #expect(summary.imported == 1)
        events = try await reactivated()
        #expect(events.count == 2)
        #expect(events.first?.detail == "was IllegalRefreshToken")

        // A rotation committed after the seller was marked: one event, not two.
        try await mark("IllegalRefreshToken", at: now)
        let rotated = makeToken("RT")
        #expect(
            try await store.commitRotation(
                account: "1001", sent: current, grant: grant("1001", refresh: rotated, at: now),
                nextRefreshAt: now + .seconds(600), now: now))
        current = rotated
        #expect(try await reactivated().count == 3)

        // The callback (enrollUnlessManaged).
        try await mark("IllegalRefreshToken", at: now)
        current = makeToken("RT")
        #expect(
            try await store.enrollUnlessManaged(
                grant: grant("1001", refresh: current, at: now), nextRefreshAt: now, now: now) != nil)
        #expect(try await reactivated().count == 4)
        #expect(try await store.account("1001")?.status == .active)
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func enrollUnlessManagedStoresNewAndReauthRequiredSellersOnly(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let now = currentTime()
        let first = makeToken("RT")
        let stored = try #require(
            try await store.enrollUnlessManaged(
                grant: grant("1001", refresh: first, at: now), nextRefreshAt: now + .seconds(60), now: now))
        #expect(stored.status == .active)
        #expect(stored.refreshToken == first)
        #expect(stored.nextRefreshAt == now + .seconds(60))
        let enrolled = try await store.events(EventQuery(sellerID: "1001", kind: .enrolled))
        #expect(enrolled.count == 1)
        #expect(enrolled.first?.detail?.hasPrefix("new account; access token expires ") == true)

        // Active: untouched.
        #expect(
            try await store.enrollUnlessManaged(grant: grant("1001", at: now), nextRefreshAt: now, now: now) == nil)
        #expect(try await store.account("1001") == stored)
        // Disabled: untouched.
        let disabled = try await store.setStatus(account: "1001", to: .disabled, nextRefreshAt: nil, now: now)
        #expect(
            try await store.enrollUnlessManaged(grant: grant("1001", at: now), nextRefreshAt: now, now: now) == nil)
        #expect(try await store.account("1001") == disabled)
        #expect(try await store.events(EventQuery(sellerID: "1001", kind: .enrolled)).count == 1)

        // Needing re-authorization: the new tokens, active again.
        let marked = makeToken("RT")
        _ = try await store.enroll(grant: grant("1002", refresh: marked, at: now), nextRefreshAt: now, now: now)
        #expect(
            try await store.markReauthRequired(
                account: "1002", sent: marked, reason: "IllegalRefreshToken", requestID: nil, now: now))
        let fresh = makeToken("RT")
        let back = try #require(
            try await store.enrollUnlessManaged(
                grant: grant("1002", refresh: fresh, at: now), nextRefreshAt: now + .seconds(60), now: now))
        #expect(back.status == .active)
        #expect(back.statusReason == nil)
        #expect(back.refreshToken == fresh)
        #expect(try await store.account("1002") == back)
        let reauthorized = try await store.events(EventQuery(sellerID: "1002", kind: .enrolled, limit: 1))
        #expect(reauthorized.first?.detail?.hasPrefix("re-authorized; access token expires ") == true)
        #expect(try await store.events(EventQuery(sellerID: "1002", kind: .reactivated)).count == 1)
        try await subject.close()
    }

    // MARK: - The callback's key and states

    @Test(arguments: Backend.available)
    func theFirstKeyStoredWinsForEveryone(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let other = try await subject.openAnother()
        let now = currentTime()
        let made = Made()
        #expect(try await store.key(named: "state", now: now) { made.make("first") } == "first")
        #expect(try await store.key(named: "state", now: now) { made.make("second") } == "first")
        #expect(try await other.store.key(named: "state", now: now) { made.make("third") } == "first")
        #expect(made.count == 1, "made on first use only")
        #expect(try await store.key(named: "another", now: now) { "x" } == "x")

        // Two processes (nodes) making it at once: both get the one stored.
        async let fromStore = store.key(named: "race", now: now) { "from the store" }
        async let fromOther = other.store.key(named: "race", now: now) { "from the other" }
        let (stored, otherStored) = try await (fromStore, fromOther)
        #expect(stored == otherStored)
        try await other.close()
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func aStateIsConsumedOnceCanBeReleasedAFewTimesAndIsForgottenOnceExpired(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let other = try await subject.openAnother()
        let now = currentTime()
        let expires = now + .seconds(3600)
        #expect(try await store.consumeState(nonce: "n1", expiresAt: expires, now: now))
        #expect(!(try await store.consumeState(nonce: "n1", expiresAt: expires, now: now)), "replayed")
        #expect(!(try await other.store.consumeState(nonce: "n1", expiresAt: expires, now: now)), "replayed elsewhere")
        #expect(try await store.releaseState(nonce: "n1", maxReleases: 2))
        #expect(!(try await store.releaseState(nonce: "n1", maxReleases: 2)), "not in use: nothing to release")
        #expect(try await other.store.consumeState(nonce: "n1", expiresAt: expires, now: now), "released")
        #expect(!(try await store.consumeState(nonce: "n1", expiresAt: expires, now: now)))
        // Released twice at most: the third failed exchange leaves it spent, everywhere.
        #expect(try await other.store.releaseState(nonce: "n1", maxReleases: 2))
        #expect(try await store.consumeState(nonce: "n1", expiresAt: expires, now: now), "released again")
        #expect(!(try await store.releaseState(nonce: "n1", maxReleases: 2)), "spent")
        #expect(!(try await other.store.consumeState(nonce: "n1", expiresAt: expires, now: now)), "spent")

        // Expired states are forgotten (the callback refuses them as expired).
        #expect(try await store.consumeState(nonce: "n2", expiresAt: now + .seconds(1), now: now))
        #expect(!(try await store.consumeState(nonce: "n2", expiresAt: now + .seconds(1), now: now)))
        #expect(try await store.consumeState(nonce: "n2", expiresAt: now + .seconds(1), now: now + .seconds(2)))

        // Used at once by two processes (nodes): one of them.
        async let fromStore = store.consumeState(nonce: "n3", expiresAt: expires, now: now)
        async let fromOther = other.store.consumeState(nonce: "n3", expiresAt: expires, now: now)
        let results = try await [fromStore, fromOther]
        #expect(results.filter { $0 }.count == 1)
        try await other.close()
        try await subject.close()
    }

    // MARK: - The fleet

    @Test(arguments: Backend.available)
    func fleetFiguresAndListsDescribeTheSellers(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let empty = FleetFigures(byStatus: [.active: 0, .reauthRequired: 0, .disabled: 0])
        #expect(try await store.fleetFigures(reauthHorizon: currentTime()) == empty)
        #expect(try await store.countReauthRequired() == 0)

        let now = currentTime()
        // Active, its refresh token ending soon.
        _ = try await store.enroll(
            grant: grant("2001", at: now, validUntil: now + Self.day * 5), nextRefreshAt: now + .seconds(100), now: now)
        // Active, ending late, refreshed first; its access token expires first.
        _ = try await store.enroll(
            grant: grant("2002", at: now - .seconds(3600), validUntil: now + Self.day * 40),
            nextRefreshAt: now + .seconds(50), now: now)
        // Two that must authorize again, the first waiting longer.
        for (seller, moment) in [("2005", now + .seconds(1)), ("2003", now + .seconds(2))] {
            let sent = makeToken("RT")
            _ = try await store.enroll(grant: grant(seller, refresh: sent, at: now), nextRefreshAt: now, now: now)
            #expect(
                try await store.markReauthRequired(
                    account: .seller(seller), sent: sent, reason: "IllegalRefreshToken", requestID: nil, now: moment))
        }
        // Disabled, its token ending soon (not counted).
        _ = try await store.enroll(
            grant: grant("2004", at: now, validUntil: now + Self.day), nextRefreshAt: now, now: now)
        _ = try await store.setStatus(account: "2004", to: .disabled, nextRefreshAt: nil, now: now)

        let horizon = now + Self.day * 7
        let figures = try await store.fleetFigures(reauthHorizon: horizon)
        #expect(
            figures
                == FleetFigures(
                    byStatus: [.active: 2, .reauthRequired: 2, .disabled: 1], reauthDue: 1,
                    nextRefreshAt: now + .seconds(50), earliestAccessExpiry: now - .seconds(3600) + Self.day))
        #expect(try await store.countByStatus() == figures.byStatus)
        #expect(try await store.countReauthRequired() == 2)
        #expect(try await store.accountsNeedingReauthorization(limit: 10).map(\.sellerID) == ["2005", "2003"])
        #expect(try await store.accountsNeedingReauthorization(limit: 1).map(\.sellerID) == ["2005"])
        #expect(try await store.accountsDueForReauthorization(horizon: horizon, limit: 10).map(\.sellerID) == ["2001"])
        #expect(
            try await store.accountsDueForReauthorization(horizon: now + Self.day * 60, limit: 10).map(\.sellerID)
                == ["2001", "2002"])
        #expect(try await store.nextRefreshes(limit: 10).map(\.sellerID) == ["2002", "2001"])
        #expect(try await store.nextRefreshes(limit: 1).map(\.sellerID) == ["2002"])
        let listed = try #require(try await store.nextRefreshes(limit: 1).first)
        #expect(try await store.account("2002") == listed)
        try await subject.close()
    }

    @Test(arguments: Backend.available)
    func pruningKeepsEventsStillToBeDelivered(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let store = subject.store
        let now = currentTime()
        try await store.appendEvent(.degraded, sellerID: nil, detail: "old", requestID: nil, at: now - Self.day * 3)
        try await store.appendEvent(.enabled, sellerID: "1", detail: nil, requestID: nil, at: now - Self.day * 3)
        try await store.appendEvent(.degraded, sellerID: nil, detail: "storage: full", requestID: nil, at: now)
        try await store.appendEvent(.recovered, sellerID: nil, detail: "storage: full", requestID: nil, at: now)
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: now - Self.day, now: now) == 2)
        #expect(try await store.enqueueDeliveries(channel: "command", oldest: now - Self.day, now: now) == 2)
        for delivery in try await store.dueDeliveries(channel: "webhook", now: now, limit: 50) {
            try await store.recordDelivery(eventID: delivery.event.id, channel: "webhook", result: .delivered, now: now)
        }
        let cutoff = now + .seconds(60)
        // The two old ones go (one was never taken on); the two the command still has to deliver stay.
        #expect(try await store.pruneEvents(before: cutoff, batchSize: 1) == 2)
        #expect(try await store.events(EventQuery(limit: 10)).map(\.detail) == ["storage: full", "storage: full"])
        #expect(try await store.pruneEvents(before: cutoff, batchSize: 1) == 0)

        let pending = try await store.dueDeliveries(channel: "command", now: now, limit: 50)
        try await store.recordDelivery(
            eventID: pending[0].event.id, channel: "command", result: .abandoned(error: "exit 1"), now: now)
        try await store.recordDelivery(
            eventID: pending[1].event.id, channel: "command", result: .failed(error: "exit 1", retryAt: now), now: now)
        #expect(try await store.pruneEvents(before: cutoff, batchSize: 10) == 1, "given up: it goes")
        #expect(try await store.deliveryCounts()["command"] == DeliveryCounts(pending: 1))
        try await store.recordDelivery(eventID: pending[1].event.id, channel: "command", result: .delivered, now: now)
        #expect(try await store.pruneEvents(before: cutoff, batchSize: 10) == 1)
        #expect(try await store.events(EventQuery(limit: 10)).isEmpty)
        #expect(try await store.deliveryCounts().isEmpty, "with their delivery rows")
        #expect(try await store.latestOutboxEventID() == 0, "and their outbox rows")
        try await subject.close()
    }

    // MARK: - Several nodes (PostgreSQL)

    /// Two nodes on one schema deliver from one outbox: each delivery is
    /// handed to one node at a time; a claim stands while its node has not
    /// recorded it, and is taken over only once it has lapsed and its node
    /// is gone.
    @Test(.enabled(if: PostgresServer.isAvailable, "needs PostgreSQL"))
    func twoNodesNeverGetTheSameDueDeliveryAtOnce() async throws {
        let database = try #require(ConformancePostgres.current, "the suite's PostgreSQL did not start")
        let schema = ConformancePostgres.uniqueName("c_")
        let nodeA = try await database.open(schema: schema)
        let nodeB = try await database.open(schema: schema)
        defer {
            nodeA.close()
            nodeB.close()
        }
        let now = currentTime()
        let count = 60
        for index in 0..<count {
            try await nodeA.appendEvent(.degraded, sellerID: nil, detail: "event \(index)", requestID: nil, at: now)
        }
        // Both take them on at once: each event once.
        async let takenByA = nodeA.enqueueDeliveries(channel: "webhook", oldest: now - Self.day, now: now)
        async let takenByB = nodeB.enqueueDeliveries(channel: "webhook", oldest: now - Self.day, now: now)
        #expect(try await takenByA + takenByB == count)

        // Both claim at once, in small batches, until none is left.
        @Sendable func drain(_ store: PostgresAccountStore) async throws -> [Int64] {
            var delivered: [Int64] = []
            while true {
                let due = try await store.dueDeliveries(channel: "webhook", now: now, limit: 3)
                if due.isEmpty { return delivered }
                for delivery in due {
                    delivered.append(delivery.event.id)
                    try await store.recordDelivery(
                        eventID: delivery.event.id, channel: "webhook", result: .delivered, now: now)
                }
            }
        }
        async let byA = drain(nodeA)
        async let byB = drain(nodeB)
        let (deliveredByA, deliveredByB) = try await (byA, byB)
        #expect(Set(deliveredByA).isDisjoint(with: deliveredByB))
        #expect(deliveredByA.count + deliveredByB.count == count)
        #expect(Set(deliveredByA + deliveredByB).count == count)
        #expect(try await nodeA.deliveryCounts() == ["webhook": DeliveryCounts(delivered: count)])

        // A claim stands while its holder delivers; a store that never joined
        // the cluster is no live node: once its claim lapsed, it is taken over.
        let nodeC = try await database.open(schema: schema, deliveryClaim: .seconds(1))
        defer { nodeC.close() }
        try await nodeC.appendEvent(.degraded, sellerID: nil, detail: "held", requestID: nil, at: now)
        #expect(try await nodeC.enqueueDeliveries(channel: "webhook", oldest: now - Self.day, now: now) == 1)
        let held = try await nodeC.dueDeliveries(channel: "webhook", now: now, limit: 10).map(\.event.id)
        #expect(held.count == 1)
        #expect(try await nodeA.dueDeliveries(channel: "webhook", now: now, limit: 10).isEmpty)
        #expect(try await nodeA.nextDeliveryAttempt(channel: "webhook") == nil, "not A's to wait for")
        #expect(try await nodeC.nextDeliveryAttempt(channel: "webhook") == now)
        #expect(try await nodeC.dueDeliveries(channel: "webhook", now: now, limit: 10).map(\.event.id) == held)
        try await Task.sleep(for: .milliseconds(1_500))
        #expect(try await nodeA.dueDeliveries(channel: "webhook", now: now, limit: 10).map(\.event.id) == held)
        #expect(try await nodeC.dueDeliveries(channel: "webhook", now: now, limit: 10).isEmpty, "A's now")
        // C's late answer is recorded, but does not give A's claim away.
        try await nodeC.recordDelivery(
            eventID: held[0], channel: "webhook", result: .failed(error: "HTTP 503", retryAt: now), now: now)
        #expect(try await nodeB.dueDeliveries(channel: "webhook", now: now, limit: 10).isEmpty)
        try await nodeA.recordDelivery(eventID: held[0], channel: "webhook", result: .delivered, now: now)

        // A live node's claim stands, lapsed or not, until the node is gone.
        let nodeD = try await database.open(schema: schema, deliveryClaim: .seconds(1))
        defer { nodeD.close() }
        let name = ConformancePostgres.uniqueName("node-")
        let cluster = Task {
            await nodeD.runCluster(
                node: name, host: "test", pid: 1, heartbeat: .milliseconds(200), takeover: .seconds(1),
                onLiveNodes: { _ in })
        }
        while try database.psql("SELECT count(*) FROM \(schema).nodes WHERE node = '\(name)'") != "1" {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await nodeD.appendEvent(.recovered, sellerID: nil, detail: "held by a live node", requestID: nil, at: now)
        #expect(try await nodeD.enqueueDeliveries(channel: "webhook", oldest: now - Self.day, now: now) == 1)
        let heldByD = try await nodeD.dueDeliveries(channel: "webhook", now: now, limit: 10).map(\.event.id)
        #expect(heldByD.count == 1)
        try await Task.sleep(for: .milliseconds(1_500))
        #expect(try await nodeB.dueDeliveries(channel: "webhook", now: now, limit: 10).isEmpty, "D is alive")
        cluster.cancel()
        await cluster.value
        #expect(try await nodeB.dueDeliveries(channel: "webhook", now: now, limit: 10).map(\.event.id) == heldByD)
        #expect(try await nodeB.deliveryCounts() == ["webhook": DeliveryCounts(pending: 1, delivered: count + 1)])
    }
}

extension OperatorStoreTests {
    /// Events are numbered when inserted and committed in any order; a
    /// channel takes on what follows the newest it has. A notified event
    /// another writer committed late, below one already taken on, must not
    /// be skipped (the schema numbers notified events in commit order).
    @Test(.enabled(if: PostgresServer.isAvailable, "needs PostgreSQL"))
    func aNotifiedEventCommittedLateIsStillTakenOn() async throws {
        let database = try #require(ConformancePostgres.current, "the suite's PostgreSQL did not start")
        let schema = ConformancePostgres.uniqueName("c_")
        // As the daemon opens it: lock waits end as contention, except the
        // wait for the outbox's numbering lock, which is waited out.
        let store = try await database.open(schema: schema, lockWait: .milliseconds(100))
        defer { store.close() }
        let now = currentTime()
        let oldest = now - .seconds(86_400)
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: now) == 0)
        // Another writer's transaction writes a notified event and commits
        // only once the test says so (a key named "go").
        let late = Task.detached {
            try database.psql(
                """
                BEGIN;
                INSERT INTO \(schema).events (at, kind, detail) VALUES (\(now.millisecondsSince1970), 'degraded', 'late');
                DO $$ BEGIN
                    FOR i IN 1..500 LOOP
                        EXIT WHEN EXISTS (SELECT 1 FROM \(schema).keys WHERE name = 'go');
                        PERFORM pg_sleep(0.02);
                    END LOOP;
                END $$;
                COMMIT;
                """)
        }
        while try database.psql(
            """
            SELECT count(*) FROM pg_stat_activity
            WHERE state = 'active' AND query LIKE 'DO $$%' AND pid <> pg_backend_pid()
            """) != "1"
        {
            try await Task.sleep(for: .milliseconds(20))
        }
        // Meanwhile another event is written, and the channel takes on what it sees.
        let first = Task {
            try await store.appendEvent(.recovered, sellerID: nil, detail: "first", requestID: nil, at: now)
            return try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: now)
        }
        try await Task.sleep(for: .milliseconds(500))
        _ = try await store.key(named: "go", now: now) { "go" }
        _ = try await late.value
        let taken = try await first.value + store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: now)
        #expect(taken == 2)
        let due = try await store.dueDeliveries(channel: "webhook", now: now, limit: 10)
        #expect(Set(due.compactMap(\.event.detail)) == ["late", "first"])
    }
}

extension OperatorStoreTests {
    /// The `reactivated` event a node's rotation causes names that node, as
    /// its `refreshed` event does; a command's names none (the node is set
    /// for the rotation's own transaction only).
    @Test(.enabled(if: PostgresServer.isAvailable, "needs PostgreSQL"))
    func theReactivatedEventOfARotationNamesItsNodeAndNoOtherWrite() async throws {
        let database = try #require(ConformancePostgres.current, "the suite's PostgreSQL did not start")
        let schema = ConformancePostgres.uniqueName("c_")
        let node = try await database.open(schema: schema)
        let command = try await database.open(schema: schema)
        defer {
            node.close()
            command.close()
        }
        let name = ConformancePostgres.uniqueName("node-")
        let cluster = Task {
            await node.runCluster(
                node: name, host: "test", pid: 1, heartbeat: .milliseconds(200), takeover: .seconds(1),
                onLiveNodes: { _ in })
        }
        defer { cluster.cancel() }
        while try database.psql("SELECT count(*) FROM \(schema).nodes WHERE node = '\(name)'") != "1" {
            try await Task.sleep(for: .milliseconds(50))
        }
        let now = currentTime()
        var current = makeToken("RT")
        _ = try await command.enroll(grant: grant("1001", refresh: current, at: now), nextRefreshAt: now, now: now)
        #expect(
            try await command.markReauthRequired(
                account: "1001", sent: current, reason: "IllegalRefreshToken", requestID: nil, now: now))
        let rotated = makeToken("RT")
        #expect(
            try await node.commitRotation(
                account: "1001", sent: current, grant: grant("1001", refresh: rotated, at: now),
                nextRefreshAt: now + .seconds(600), now: now))
        current = rotated
        let byRotation = try await node.events(EventQuery(sellerID: "1001", limit: 2))
        #expect(Set(byRotation.map(\.kind)) == [.refreshed, .reactivated])
        #expect(byRotation.allSatisfy { $0.node == name })

        // Later writes on the node's connections (enroll by the callback) name no node.
        for _ in 0..<8 {
            #expect(
                try await node.markReauthRequired(
                    account: "1001", sent: current, reason: "IllegalRefreshToken", requestID: nil, now: now))
            current = makeToken("RT")
            _ = try await node.enroll(grant: grant("1001", refresh: current, at: now), nextRefreshAt: now, now: now)
            let reactivated = try #require(
                try await node.events(EventQuery(sellerID: "1001", kind: .reactivated, limit: 1)).first)
            #expect(reactivated.node == nil)
        }
        #expect(try await node.events(EventQuery(sellerID: "1001", kind: .reactivated, limit: 100)).count == 9)
    }
}

/// Counts the calls of a key's `make`.
private final class Made: Sendable {
    private let calls = Mutex(0)

    var count: Int { calls.withLock { $0 } }

    func make(_ value: String) -> String {
        calls.withLock { $0 += 1 }
        return value
    }
}
