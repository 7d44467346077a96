import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// The daemon picks up what CLI processes write (`add`, `import`, `enable`,
/// `disable`, `remove`) through ``SQLiteAccountStore/changes(since:)``.
/// Two store instances on one directory stand for the two processes: each
/// has its own connections, so `PRAGMA data_version` behaves as across processes.
@Suite struct ChangeFeedTests {
    let scratch: ScratchDirectory

    init() throws {
        scratch = try ScratchDirectory()
    }

    @Test func anotherProcessesWritesAreSeenOnceEach() async throws {
        let daemon = try await scratch.open()
        let cli = try await scratch.open()
        var cursor = try await daemon.changes(since: nil).cursor

        let due = Moments.now + .seconds(90)
        _ = try await cli.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: due, now: Moments.now)
        var answer = try await daemon.changes(since: cursor)
        #expect(answer.changed.deadlines == [ScheduledAccount("1001", due: due)])
        cursor = answer.cursor

        answer = try await daemon.changes(since: cursor)
        #expect(answer.changed.isEmpty)
        #expect(answer.cursor == cursor)

        _ = try await cli.setStatus(account: "1001", to: .disabled, now: Moments.now)
        answer = try await daemon.changes(since: cursor)
        #expect(answer.changed.deadlines == [ScheduledAccount("1001", due: nil)])
        cursor = answer.cursor

        let again = Moments.now + .seconds(5)
        _ = try await cli.setStatus(account: "1001", to: .active, nextRefreshAt: again, now: Moments.now)
        answer = try await daemon.changes(since: cursor)
        #expect(answer.changed.deadlines == [ScheduledAccount("1001", due: again)])
        cursor = answer.cursor

        try await cli.remove(account: "1001", now: Moments.now)
        answer = try await daemon.changes(since: cursor)
        #expect(answer.changed.deadlines == [ScheduledAccount("1001", due: nil)])
        cursor = answer.cursor

        // Re-adding a removed seller reports the account, not the tombstone.
        _ = try await cli.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: due, now: Moments.now)
        answer = try await daemon.changes(since: cursor)
        #expect(answer.changed.deadlines == [ScheduledAccount("1001", due: due)])

        try await cli.close()
        try await daemon.close()
    }

    @Test func importIsReportedAsOneChangePerSeller() async throws {
        let daemon = try await scratch.open()
        let cli = try await scratch.open()
        let cursor = try await daemon.changes(since: nil).cursor
        let records = (0..<25).map {
            ImportRecord(
                sellerID: "s\($0)", refreshToken: Tokens.refresh(), nextRefreshAt: Moments.now + .seconds(Int64($0)))
        }
        _ = try await cli.importAccounts(records, batchSize: 10, now: Moments.now)
        let changed = try await daemon.changes(since: cursor).changed
        #expect(changed.count == 25)
        #expect(Set(changed.map(\.key.sellerID)) == Set(records.map(\.sellerID)))
        #expect(changed.first { $0.key.sellerID == "s7" }?.due == Moments.now + .seconds(7))
        try await cli.close()
        try await daemon.close()
    }

    @Test func writesThroughTheSameStoreAreSeenToo() async throws {
        let store = try await scratch.open()
        let cursor = try await store.changes(since: nil).cursor
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        let answer = try await store.changes(since: cursor)
        #expect(answer.changed.map(\.key.sellerID) == ["1001"])
        #expect(try await store.changes(since: answer.cursor).changed.isEmpty)
        try await store.close()
    }

    @Test func markedAccountIsReportedWithoutDeadline() async throws {
        let daemon = try await scratch.open()
        let cli = try await scratch.open()
        let refresh = Tokens.refresh()
        _ = try await daemon.enroll(
            grant: makeGrant(seller: "1001", refresh: refresh), nextRefreshAt: Moments.now, now: Moments.now)
        let cursor = try await daemon.changes(since: nil).cursor
        _ = try await cli.markReauthRequired(
            account: "1001", sent: refresh, reason: "IllegalRefreshToken", requestID: nil, now: Moments.now)
        #expect(
            try await daemon.changes(since: cursor).changed.deadlines == [ScheduledAccount("1001", due: nil)])
        try await cli.close()
        try await daemon.close()
    }

    @Test func leasesAloneAreNotChanges() async throws {
        let daemon = try await scratch.open()
        let cli = try await scratch.open()
        _ = try await daemon.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        let cursor = try await daemon.changes(since: nil).cursor
        _ = try await cli.acquireLease(
            account: "1001", owner: "cli", until: Moments.now + .seconds(9), now: Moments.now)
        try await cli.releaseLease(account: "1001", owner: "cli")
        #expect(try await daemon.changes(since: cursor).changed.isEmpty)
        try await cli.close()
        try await daemon.close()
    }
}

extension ChangeFeedTests {
    @Test func cursorAheadOfTheStoreReportsEverything() async throws {
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        let future = ChangeCursor(dataVersion: -1, sequence: 1_000)
        #expect(try await store.changes(since: future).changed.map(\.key.sellerID) == ["1001"])
        try await store.close()
    }
}
