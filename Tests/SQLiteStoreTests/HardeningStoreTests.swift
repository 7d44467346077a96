import CSQLite
import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// What the store does with odd grants, re-run imports, clock steps, old
/// events and a damaged tokens.db.
@Suite struct HardeningStoreTests {
    let scratch = try! ScratchDirectory()

    @Test func grantWithoutRefreshTokenKeepsTheStoredOneAndAFinalOneStopsRefreshing() async throws {
        let store = try await scratch.open()
        let first = Tokens.refresh("first")
        _ = try await store.enroll(
            grant: makeGrant(seller: "1", refresh: first), nextRefreshAt: Moments.now, now: Moments.now)

        var notRotated = makeGrant(seller: "1")
        notRotated.refreshToken = nil
        let stored = try await store.commitRotation(
            account: "1", sent: first, grant: notRotated, nextRefreshAt: Moments.now, now: Moments.now)
        #expect(stored)
        var account = try #require(try await store.account("1"))
        #expect(account.refreshToken == first)
        #expect(account.accessToken == notRotated.accessToken)
        #expect(account.isRefreshable)

        var final = makeGrant(seller: "1", refreshLifetime: .zero)
        final.refreshToken = nil
        #expect(final.isFinalGrant)
        let storedFinal = try await store.commitRotation(
            account: "1", sent: first, grant: final, nextRefreshAt: Moments.now, now: Moments.now)
        #expect(storedFinal)
        account = try #require(try await store.account("1"))
        #expect(account.refreshToken == first)
        #expect(!account.isRefreshable)
        #expect(account.status == AccountStatus.active)
        #expect(account.accessToken == final.accessToken)
        try await store.close()
    }

    @Test func grantWithoutAccessTokenKeepsTheStoredAccessTokenAndExpiry() async throws {
        let store = try await scratch.open()
        let first = Tokens.refresh("first")
        let enrolled = makeGrant(seller: "1", refresh: first)
        _ = try await store.enroll(grant: enrolled, nextRefreshAt: Moments.now, now: Moments.now)
        var odd = makeGrant(seller: "1", expireTime: Moments.now)
        odd.accessToken = nil
        let stored = try await store.commitRotation(
            account: "1", sent: first, grant: odd, nextRefreshAt: Moments.now, now: Moments.now)
        #expect(stored)
        let account = try #require(try await store.account("1"))
        #expect(account.refreshToken == odd.refreshToken)
        #expect(account.accessToken == enrolled.accessToken)
        #expect(account.expireTime == enrolled.expireTime)
        try await store.close()
    }

    @Test func reimportSkipsManagedSellersUnlessReplaceIsAsked() async throws {
        let store = try await scratch.open()
        let rotated = Tokens.refresh("rotated")
        _ = try await store.enroll(
            grant: makeGrant(seller: "1", refresh: rotated), nextRefreshAt: Moments.now, now: Moments.now)
        let stale = [
            ImportRecord(sellerID: "1", refreshToken: Tokens.refresh("stale")),
            ImportRecord(sellerID: "2", refreshToken: Tokens.refresh("new")),
        ]
        let summary = try await store.importAccounts(stale, now: Moments.now)
        #expect(summary.imported == 1)
        #expect(summary.alreadyManaged == ["1"])
        #expect(try await store.account("1")?.refreshToken == rotated)

        let replaced = try await store.importAccounts(Array(stale.prefix(1)), replace: true, now: Moments.now)
        #expect(replaced.imported == 1 && replaced.alreadyManaged.isEmpty)
        #expect(try await store.account("1")?.refreshToken == stale[0].refreshToken)
        try await store.close()
    }

    @Test func clockStepShiftsEveryStoredDeadlineAndLease() async throws {
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1"), nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.acquireLease(
            account: "1", owner: "me", until: Moments.now + .seconds(60), now: Moments.now)
        try await store.shiftSchedules(by: .seconds(-3600))
        let account = try #require(try await store.account("1"))
        #expect(account.nextRefreshAt == Moments.now - .seconds(3600))
        #expect(account.lease?.expiresAt == Moments.now - Duration.seconds(3540))
        try await store.close()
    }

    @Test func oldEventsArePrunedAndRecentOnesKept() async throws {
        let store = try await scratch.open()
        for day in 0..<5 {
            try await store.appendEvent("note", detail: "day \(day)", at: Moments.now - .seconds(Int64(day) * 86_400))
        }
        let deleted = try await store.pruneEvents(before: Moments.now - .seconds(2 * 86_400 + 1), batchSize: 1)
        #expect(deleted == 2)
        let left = try await store.recentEvents(limit: 10).map { $0.detail }
        #expect(left == ["day 2", "day 1", "day 0"])
        try await store.close()
    }

    @Test func damagedTokensDatabaseIsMovedAsideAndRebuiltFromKeeper() async throws {
        var store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1"), nextRefreshAt: Moments.now, now: Moments.now)
        try await store.close()
        let tokensPath = store.tokensPath
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: tokensPath))
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: tokensPath + suffix) }

        store = try await scratch.open()
        #expect(try ReaderView.validSellers(scratch) == ["1"])
        let aside = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter {
            $0.contains(".damaged-")
        }
        #expect(aside.count == 1)
        try await store.close()
    }

    @Test func damagedKeeperDatabaseIsRefusedAndLeftUntouched() async throws {
        let store = try await scratch.open()
        try await store.close()
        let garbage = Data(repeating: 0x42, count: 8192)
        try garbage.write(to: URL(fileURLWithPath: store.keeperPath))
        await #expect(throws: SQLiteStoreError.self) { try await scratch.open() }
        #expect(try Data(contentsOf: URL(fileURLWithPath: store.keeperPath)) == garbage)
    }

    // Seen in CI: on a small disk, the room freed after a full disk was
    // taken again by keeper.db's write-ahead log, which SQLite checkpoints
    // only at 1,000 pages (4 MiB): the rotated pairs of the calls in flight
    // at the stop went to salvage files instead of keeper.db. Without the
    // low-space checkpoints this disk was full within 200 rotations.
    @Test(.enabled(if: SmallDisk.canMount, "mounting a tmpfs needs root (CI runs as root)"))
    func onADiskWithLittleRoomTheWriteAheadLogDoesNotTakeIt() async throws {
        let disk = scratch.file("disk")
        #expect(SmallDisk.mount(at: disk, bytes: 2 << 20), "mount a 2 MiB tmpfs")
        defer { SmallDisk.unmount(disk) }
        let store = try await SQLiteAccountStore.open(directory: disk, options: .init(), clock: FixedClock())
        let sellers: [AccountKey] = (0..<20).map { AccountKey(app: .default, sellerID: "\($0)") }
        var current: [AccountKey: Secret] = [:]
        for seller in sellers {
            let grant = makeGrant(seller: seller.sellerID)
            _ = try await store.enroll(grant: grant, nextRefreshAt: Moments.now, now: Moments.now)
            current[seller] = grant.refreshToken
        }
        for round in 0..<2_000 {
            let seller = sellers[round % sellers.count]
            let grant = makeGrant(seller: seller.sellerID)
            do {
                let stored = try await store.commitRotation(
                    account: seller, sent: current[seller]!, grant: grant, nextRefreshAt: Moments.now,
                    now: Moments.now)
                #expect(stored)
                current[seller] = grant.refreshToken
            } catch {
                Issue.record("rotation \(round) was refused: \(error)")
                break
            }
        }
        for file in ["keeper.db-wal", "tokens.db-wal"] {
            let size = try FileManager.default.attributesOfItem(atPath: disk + "/" + file)[.size] as? Int
            #expect((size ?? 0) < 256 << 10, "\(file): \(size ?? 0) bytes")
        }
        for seller in sellers {
            #expect(try await store.account(seller)?.refreshToken == current[seller])
        }
        try await store.close()
    }
}

@Suite struct LeaseTakeoverTests {
    let scratch = try! ScratchDirectory()

    @Test func takingOverADeadRefreshersLeaseFlagsTheAnswerAsPossiblyLost() async throws {
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1"), nextRefreshAt: Moments.now, now: Moments.now)
        _ = try await store.acquireLease(
            account: "1", owner: "dead", until: Moments.now + .seconds(60), now: Moments.now)
        let later = Moments.now + .seconds(61)
        guard
            case .acquired(let account) = try await store.acquireLease(
                account: "1", owner: "alive", until: later + .seconds(60), now: later)
        else {
            Issue.record("the expired lease was not taken over")
            return
        }
        #expect(account.lastAnswerLost)
        #expect(try await store.account("1")?.lastAnswerLost == true)
        try await store.releaseLease(account: "1", owner: "alive")
        // Taking one's own released lease again flags nothing new; a commit clears it.
        _ = try await store.acquireLease(account: "1", owner: "alive", until: later + .seconds(60), now: later)
        let stored = try #require(try await store.account("1"))
        let committed = try await store.commitRotation(
            account: "1", sent: stored.refreshToken, grant: makeGrant(seller: "1"), nextRefreshAt: later, now: later)
        #expect(committed)
        #expect(try await store.account("1")?.lastAnswerLost == false)
        try await store.close()
    }
}

@Suite struct StartupScheduleCapTests {
    let scratch = try! ScratchDirectory()

    @Test func aDeadlineWrittenUnderAWrongClockIsCappedByTheGatewaysExpiry() async throws {
        let store = try await scratch.open()
        // Refreshed while the local clock was a day ahead: the stored deadline is a day late.
        let grant = makeGrant(seller: "1", expireTime: Moments.now + .seconds(86_400))
        _ = try await store.enroll(grant: grant, nextRefreshAt: Moments.now + .seconds(2 * 86_400), now: Moments.now)
        let schedule = try await store.loadSchedule()
        // A fifth of the stated life (one day) before the gateway's expire_time.
        #expect(schedule.deadlines == [ScheduledAccount("1", due: Moments.now + .seconds(86_400 - 17_280))])
        try await store.close()
    }
}

@Suite struct ScheduleIndexTests {
    let scratch = try! ScratchDirectory()

    /// The start reads the schedule from the covering index, not the table
    /// (whose rows, with their tokens, are six times the bytes).
    @Test func theScheduleIsReadFromItsCoveringIndex() async throws {
        try await scratch.open().close()
        let connection = try SQLiteConnection(path: scratch.keeperPath, flags: [.readOnly])
        defer { try? connection.close() }
        let plan = try connection.prepare("EXPLAIN QUERY PLAN " + AccountVault.scheduleSQL).rows { $0.string(3) }
        #expect(plan.joined(separator: "\n").contains("COVERING INDEX accounts_schedule"), "\(plan)")
        // The once-a-minute check of the reauth window keeps its own index.
        let reauthPlan = try connection.prepare("EXPLAIN QUERY PLAN " + AccountVault.reauthEnteringSQL)
            .rows([1, 10]) { $0.string(3) }
        #expect(reauthPlan.joined().contains("accounts_by_reauth"), "\(reauthPlan)")
    }
}

@Suite struct StatusCountTests {
    let scratch = try! ScratchDirectory()

    /// Counts come from partial indexes, and agree with the rows.
    @Test func countsByStatusAgreeWithTheRowsWithoutReadingTheTable() async throws {
        let store = try await scratch.open()
        for seller in ["a", "b", "c", "d"] {
            _ = try await store.enroll(grant: makeGrant(seller: seller), nextRefreshAt: Moments.now, now: Moments.now)
        }
        _ = try await store.setStatus(account: "b", to: .disabled, now: Moments.now)
        let c = try #require(try await store.account("c"))
        #expect(
            try await store.markReauthRequired(
                account: "c", sent: c.refreshToken, reason: "x", requestID: nil, now: Moments.now))
        #expect(try await store.countByStatus() == [.active: 2, .disabled: 1, .reauthRequired: 1])
        #expect(try await store.countReauthRequired() == 1)
        try await store.close()
        let connection = try SQLiteConnection(path: scratch.keeperPath, flags: [.readOnly])
        defer { try? connection.close() }
        let plan = try connection.prepare(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM accounts WHERE status = 'reauth_required'"
        )
        .rows { $0.string(3) }
        #expect(plan.joined().contains("accounts_reauth_required"), "\(plan)")
    }
}

@Suite struct PruneIndexTests {
    let scratch = try! ScratchDirectory()

    /// Pruning finds old events through the time index, not by reading them all.
    @Test func pruningSeeksTheTimeIndex() async throws {
        try await scratch.open().close()
        let connection = try SQLiteConnection(path: scratch.keeperPath, flags: [.readOnly])
        defer { try? connection.close() }
        let plan = try connection.prepare("EXPLAIN QUERY PLAN " + AccountVault.pruneSQL).rows([1, 10]) { $0.string(3) }
        #expect(plan.contains { $0.contains("events_by_time") } && !plan.contains { $0 == "SCAN events" }, "\(plan)")
    }
}
