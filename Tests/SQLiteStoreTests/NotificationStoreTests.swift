import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// The outbox, delivery state, the warning window, the callback's states and
/// the online backup, in keeper.db.
@Suite struct NotificationStoreTests {
    let scratch = try! ScratchDirectory()

    @Test func onlyTheNotifiedKindsEnterTheOutboxInTheirOwnTransaction() async throws {
        let store = try await scratch.open()
        let refresh = Tokens.refresh("1")
        _ = try await store.enroll(
            grant: makeGrant(seller: "1", refresh: refresh), nextRefreshAt: Moments.now, now: Moments.now)
        #expect(try await store.latestOutboxEventID() == 0, "enrolled is not notified")
        let marked = try await store.markReauthRequired(
            account: "1", sent: refresh, reason: "IllegalRefreshToken", requestID: "req-1", now: Moments.now)
        #expect(marked)
        try await store.appendEvent(.degraded, detail: "storage: disk full", at: Moments.now)
        try await store.appendEvent(.refreshFailed, sellerID: "1", detail: "timeout", at: Moments.now)
        let outbox = try SQLiteReaderForTests.column(
            scratch.file("keeper.db"),
            "SELECT e.kind FROM outbox o JOIN events e ON e.id = o.event_id ORDER BY o.event_id")
        #expect(outbox == ["reauth_required", "degraded"])
        try await store.close()
    }

    @Test func aReauthRequiredSellerAuthorizedAgainRaisesReactivatedWhateverWroteIt() async throws {
        let store = try await scratch.open()
        let first = Tokens.refresh("a")
        _ = try await store.enroll(
            grant: makeGrant(seller: "1", refresh: first), nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.markReauthRequired(
            account: "1", sent: first, reason: "RotationLost", requestID: nil, now: Moments.now)
        _ = try await store.enroll(
            grant: makeGrant(seller: "1"), nextRefreshAt: Moments.now, now: Moments.now + .seconds(5))
        let reactivated = try await store.events(EventQuery(kind: .reactivated))
        #expect(reactivated.count == 1)
        #expect(reactivated.first?.sellerID == "1")
        #expect(reactivated.first?.detail == "was RotationLost")
        // Enrolling an active seller again is no reactivation.
        _ = try await store.enroll(
            grant: makeGrant(seller: "1"), nextRefreshAt: Moments.now, now: Moments.now + .seconds(9))
        #expect(try await store.events(EventQuery(kind: .reactivated)).count == 1)
        try await store.close()
    }

    @Test func reauthDueIsRaisedOnceOnEntryAndAgainOnlyAfterLeavingTheWindow() async throws {
        let store = try await scratch.open()
        let ends = Moments.now + .seconds(10 * 86_400)
        _ = try await store.enroll(
            grant: makeGrant(seller: "1", refreshTokenValidTime: ends), nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.enroll(
            grant: makeGrant(seller: "2", refreshTokenValidTime: Moments.now + .seconds(60 * 86_400)),
            nextRefreshAt: Moments.now, now: Moments.now)
        let week: Duration = .seconds(7 * 86_400)
        #expect(try await store.raiseReauthDue(horizon: Moments.now + week, now: Moments.now).isEmpty)
        let later = Moments.now + .seconds(4 * 86_400)
        #expect(try await store.raiseReauthDue(horizon: later + week, now: later) == ["1"])
        #expect(try await store.raiseReauthDue(horizon: later + week, now: later).isEmpty, "once per entry")
        #expect(
            try await store.raiseReauthDue(horizon: later + week + .seconds(3600), now: later + .seconds(3600)).isEmpty)
        // Authorized again: the new token ends far away, the window is left; later it is entered anew.
        _ = try await store.enroll(
            grant: makeGrant(seller: "1", refreshTokenValidTime: later + .seconds(30 * 86_400)),
            nextRefreshAt: Moments.now, now: later)
        #expect(try await store.raiseReauthDue(horizon: later + week, now: later).isEmpty)
        let muchLater = later + .seconds(25 * 86_400)
        #expect(try await store.raiseReauthDue(horizon: muchLater + week, now: muchLater) == ["1"], "entered anew")
        let due = try await store.events(EventQuery(sellerID: "1", kind: .reauthDue))
        #expect(due.count == 2)
        #expect(try await store.fleetFigures(reauthHorizon: muchLater + week).reauthDue == 1)
        try await store.close()
    }

    @Test func deliveriesAreTakenOnOncePerChannelAndKeepTheirStateAcrossReopening() async throws {
        var store = try await scratch.open()
        try await store.appendEvent(.degraded, detail: "old", at: Moments.now - .seconds(3 * 86_400))
        try await store.appendEvent(.degraded, detail: "storage: full", at: Moments.now)
        try await store.appendEvent(.recovered, detail: "storage: full", at: Moments.now + .seconds(1))
        let oldest = Moments.now - .seconds(86_400)
        #expect(
            try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: Moments.now) == 2,
            "not the event older than the window")
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: Moments.now) == 0)
        #expect(try await store.enqueueDeliveries(channel: "command", oldest: oldest, now: Moments.now) == 2)
        var due = try await store.dueDeliveries(channel: "webhook", now: Moments.now)
        #expect(due.map(\.event.detail) == ["storage: full", "storage: full"])
        #expect(due.map(\.event.kind) == [.degraded, .recovered])
        let first = due[0].event.id
        #expect(try await store.storePayload(eventID: first, payload: "{\"a\":1}") == "{\"a\":1}")
        #expect(try await store.storePayload(eventID: first, payload: "{\"b\":2}") == "{\"a\":1}", "rendered once")
        try await store.recordDelivery(eventID: first, channel: "webhook", result: .delivered, now: Moments.now)
        try await store.recordDelivery(
            eventID: due[1].event.id, channel: "webhook",
            result: .failed(error: "HTTP 503", retryAt: Moments.now + .seconds(30)), now: Moments.now)
        try await store.close()

        store = try await scratch.open()
        #expect(try await store.dueDeliveries(channel: "webhook", now: Moments.now).isEmpty)
        #expect(try await store.nextDeliveryAttempt(channel: "webhook") == Moments.now + .seconds(30))
        due = try await store.dueDeliveries(channel: "webhook", now: Moments.now + .seconds(30))
        #expect(due.map(\.attempts) == [1])
        try await store.recordDelivery(
            eventID: due[0].event.id, channel: "webhook", result: .abandoned(error: "HTTP 503"), now: Moments.now)
        let counts = try await store.deliveryCounts()
        #expect(counts["webhook"] == DeliveryCounts(pending: 0, abandoned: 1, delivered: 1))
        #expect(counts["command"] == DeliveryCounts(pending: 2, abandoned: 0, delivered: 0))
        // A channel configured again later gets no stale event: one dated before the window is skipped.
        try await store.appendEvent(.degraded, detail: "configuration: late", at: Moments.now - .seconds(3 * 86_400))
        #expect(try await store.enqueueDeliveries(channel: "webhook", oldest: oldest, now: Moments.now) == 0)
        // Events still to be delivered on a channel are not pruned; the rest go with their outbox and delivery rows.
        #expect(try await store.pruneEvents(before: Moments.now + .seconds(60)) == 2)
        for delivery in try await store.dueDeliveries(channel: "command", now: Moments.now) {
            try await store.recordDelivery(
                eventID: delivery.event.id, channel: "command", result: .delivered, now: Moments.now)
        }
        #expect(try await store.pruneEvents(before: Moments.now + .seconds(60)) == 2)
        #expect(try await store.deliveryCounts().isEmpty)
        #expect(try await store.latestOutboxEventID() == 0)
        try await store.close()
    }

    // States (consumed, released, spent) are the conformance suite's
    // (OperatorStoreTests), on every backend.
    @Test func aKeyIsMadeOnce() async throws {
        let store = try await scratch.open()
        let key = try await store.key(named: "k", now: Moments.now) { "abc" }
        #expect(key == "abc")
        #expect(try await store.key(named: "k", now: Moments.now) { "other" } == "abc", "made once")
        try await store.close()
    }

    @Test func backupIsAConsistentMode0600CopyAndNeverOverwrites() async throws {
        let store = try await scratch.open()
        for index in 0..<50 {
            _ = try await store.enroll(
                grant: makeGrant(seller: "\(index)"), nextRefreshAt: Moments.now, now: Moments.now)
        }
        let destination = scratch.file("copy.db")
        #expect(try await store.backup(to: destination) == "ok")
        #expect(scratch.mode("copy.db") == 0o600)
        #expect(try SQLiteReaderForTests.column(destination, "SELECT count(*) FROM accounts") == ["50"])
        let before = scratch.bytes("copy.db")
        await #expect(throws: SQLiteStoreError.self) { try await store.backup(to: destination) }
        #expect(scratch.bytes("copy.db") == before)
        try await store.close()
    }

    @Test func eventsWrittenAfterARestoreGetNewIdsForReceivers() async throws {
        var store = try await scratch.open()
        try await store.appendEvent(.degraded, detail: "storage: a", at: Moments.now)
        let backup = scratch.file("backup.db")
        #expect(try await store.backup(to: backup) == "ok")
        try await store.appendEvent(.recovered, detail: "storage: a", at: Moments.now)
        let lost = try #require(try await store.events(EventQuery(kind: .recovered)).first)
        let lostUID = try #require(try await store.outboxUID(eventID: lost.id))
        try await store.close()
        // Restored: the copy replaces keeper.db; its row ids carry on from the backup's.
        for suffix in ["", "-wal", "-shm"] {
            try? FileManager.default.removeItem(atPath: scratch.file("keeper.db" + suffix))
        }
        try FileManager.default.copyItem(atPath: backup, toPath: scratch.file("keeper.db"))
        store = try await scratch.open()
        try await store.appendEvent(.degraded, detail: "storage: b", at: Moments.now)
        let reused = try #require(try await store.events(EventQuery(kind: .degraded)).first)
        #expect(reused.id == lost.id, "SQLite hands the row id out again")
        let uid = try #require(try await store.outboxUID(eventID: reused.id))
        #expect(uid != lostUID, "but receivers see a new id")
        #expect(uid.count == 32 && uid.allSatisfy(\.isHexDigit))
        try await store.close()
    }
}
