import Foundation
import Logging
import RefreshScheduler
import SchedulerTesting
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import TokenKeeperService

/// The write path's cases as the daemon meets them: the refresh scheduler
/// over a real store of every backend (``SchedulerOverStore``), with a
/// scripted gateway. The store's own side of each case is in
/// ``WritePathTests``.
@Suite(.conformancePostgres, .timeLimit(.minutes(2)))
struct SchedulerWritePathTests {
    // Case 3: another process's write lock (an import chunk, a CLI command)
    // is contention: no DEGRADED, no critical or error line, nothing held
    // back; a pair waiting to be stored and a lease waiting to be taken go
    // through as soon as the lock is gone. The store answers contention
    // after 300 ms (SQLite's busy timeout; PostgreSQL's lock_timeout) and
    // the lock is held for 8 s: well past PostgreSQL's statement timeout
    // (5 s here), whose end is the store failing.
    @Test(arguments: Backend.available)
    func anotherProcesssLockIsContentionNotFailure(_ backend: Backend) async throws {
        try await SchedulerOverStore.with(backend, lockWait: .milliseconds(300), statementTimeout: .seconds(5)) {
            harness in
            try await harness.enroll("s1")
            try await harness.enroll("s2", due: .seconds(1))
            await harness.gateway.script("s1", .hold)
            let run = try await harness.driver.start()
            await harness.driver.fireIfDue()
            try await waitUntil("s1's call is in flight") { await harness.gateway.heldCount == 1 }

            let lock = try await harness.subject.holdWriteLock(for: .seconds(8))
            // s1's rotated pair meets the lock, and so does s2's lease.
            await harness.gateway.release("s1", with: .succeed)
            try await harness.advance(by: .milliseconds(100), until: "both sellers are refreshed") {
                harness.events.refreshed("s1").count == 1 && harness.events.refreshed("s2").count == 1
            }
            await lock.value

            #expect(harness.events.degraded.isEmpty, "\(harness.events.degraded)")
            let errors = harness.logs.lines(atLeast: .error).map(\.message)
            #expect(errors.isEmpty, "\(errors)")
            #expect(harness.logs.lines(atLeast: .warning).contains { $0.message.contains("write lock") })
            for seller in ["s1", "s2"] {
                let stored = try await harness.stored(seller)
                #expect(stored.refreshedAt != nil, "\(seller)")
                #expect(stored.lease == nil, "\(seller)")
            }
            let violations = await harness.gateway.violations
            #expect(violations.isEmpty, "\(violations)")
            try await harness.stop(run)
        }
    }

    // Case 4: a batch of leases that fails (the store briefly down) backs
    // each seller off by its own failures, not by a process-wide count
    // (which made the k-th seller wait 2^(k-1) s).
    @Test(arguments: Backend.available)
    func leaseFailuresBackOffPerSeller(_ backend: Backend) async throws {
        try await SchedulerOverStore.with(backend, concurrency: 8) { harness in
            let sellers = (0..<8).map { "s\($0)" }
            for seller in sellers { try await harness.enroll(seller) }
            harness.store.fail(.acquireLease, times: 8)
            let start = harness.clock.now()
            let run = try await harness.driver.start()
            await harness.driver.settle()

            for seller in sellers {
                let deadline = await harness.scheduler.deadline(of: .seller(seller))
                #expect(deadline == start + .seconds(1), "\(seller): \(String(describing: deadline))")
            }
            await harness.driver.advance(by: .seconds(1))
            for seller in sellers {
                #expect(harness.events.refreshed(.seller(seller)).count == 1, "\(seller)")
                #expect(try await harness.stored(seller).refreshedAt != nil, "\(seller)")
            }
            try await harness.stop(run)
        }
    }

    // Case 4: however many leases of one seller fail in a row, the next try
    // is never planned past its access token's expiry: a 20-second token
    // due now with 4 s left is tried again inside those 4 s, not after 1,
    // 2, 4, 8 … s.
    @Test(arguments: Backend.available)
    func leaseFailureBackoffStopsShortOfTheTokensExpiry(_ backend: Backend) async throws {
        try await SchedulerOverStore.with(backend) { harness in
            try await harness.enroll("short", expiresIn: .seconds(4), lifetime: .seconds(20))
            harness.store.failLeases(of: "short", times: 6)
            let expiry = try #require(try await harness.stored("short").expireTime)
            let run = try await harness.driver.start()
            var planned: [Timestamp] = []
            while harness.events.refreshed("short").isEmpty, harness.clock.now() < expiry + .seconds(60) {
                await harness.driver.settle()
                guard harness.events.refreshed("short").isEmpty else { break }
                if let deadline = await harness.scheduler.deadline(of: "short"), planned.last != deadline {
                    planned.append(deadline)
                }
                guard let next = harness.driver.timer.deadline else { break }
                harness.clock.set(max(next, harness.clock.now()))
            }
            #expect(harness.store.calls(.acquireLease) >= 7)
            #expect(planned.allSatisfy { $0 < expiry }, "planned \(planned.map { $0 - expiry }) against the expiry")
            let refreshedAt = try #require(
                harness.events.all.first { entry in
                    if case .refreshed("short", _, _, _) = entry.event { return true }
                    return false
                }?.at)
            #expect(refreshedAt < expiry, "refreshed \(refreshedAt - expiry) after the expiry")
            try await harness.stop(run)
        }
    }

    // Case 5: pairs the store refuses for their sellers' own values (here
    // the real CHECK (refresh_token <> '') of both schemas) leave their
    // slots: four of them (the concurrency) no longer stall the fleet; each
    // shows its reason on the seller, keeps its lease, is retried on its own
    // backoff without another call, and is handed over at a stop.
    @Test(arguments: Backend.available)
    func pairsRefusedForTheirOwnValuesLeaveTheirSlots(_ backend: Backend) async throws {
        try await SchedulerOverStore.with(backend, concurrency: 4) { harness in
            let refused = ["r1", "r2", "r3", "r4"]
            for seller in refused {
                try await harness.enroll(seller)
                await harness.gateway.script(.seller(seller), .succeedOddly({ $0.refreshToken = Secret("") }))
            }
            try await harness.enroll("ok", due: .seconds(10))
            let run = try await harness.driver.start()
            await harness.driver.advance(by: .seconds(10))

            #expect(harness.events.refreshed("ok").count == 1, "a seller due later is refreshed on time")
            for seller in refused {
                let stored = try await harness.stored(seller)
                #expect(stored.lastError?.hasPrefix("StoreRefused") == true, "\(seller): \(stored.lastError ?? "nil")")
                #expect(stored.lease?.owner == harness.owner, "\(seller) keeps its lease")
                #expect(stored.status == .active)
            }
            #expect(await harness.scheduler.snapshot().pairsRefused == 4)
            #expect(harness.events.degraded.isEmpty)
            await harness.driver.advance(by: .seconds(60))
            for seller in refused {
                #expect(
                    await harness.gateway.calls(for: .seller(seller)) == 1,
                    "\(seller)'s refresh token was never sent again")
            }

            try await harness.stop(run)
            #expect(harness.handedOver.map(\.sellerID).sorted() == refused)
        }
    }

    // Case 7: the heartbeat reflects the scheduler, not the store: a read
    // that hangs is reported in the snapshot (STATUS=) and the log, and the
    // ticks (WATCHDOG=1) go on.
    @Test(arguments: Backend.available)
    func aStoreThatHangsIsReportedAndTheHeartbeatGoesOn(_ backend: Backend) async throws {
        try await SchedulerOverStore.with(backend) { harness in
            try await harness.enroll("s1", due: .seconds(3600))
            let run = try await harness.driver.start()
            await harness.driver.settle()
            func ticks() -> [SchedulerSnapshot] {
                harness.events.events.compactMap { event in
                    if case .tick(let snapshot) = event { return snapshot }
                    return nil
                }
            }
            let before = ticks().count
            harness.store.hang(.changes)
            harness.clock.advance(by: .seconds(5))
            let timer = harness.driver.timer
            let hung = Task { await timer.fire() }
            try await waitUntil("the tick's read is under way") { harness.store.hangingCalls == 1 }
            for _ in 0..<4 {
                let deadline = try #require(timer.deadline, "the timer was not armed while the store hangs")
                harness.clock.set(max(deadline, harness.clock.now()))
                await timer.fire()
            }
            #expect(ticks().count >= before + 4)
            #expect(ticks().last?.storeUnanswered != nil)
            #expect(harness.logs.rendered.contains { $0.contains("has not answered") })
            harness.store.endHang()
            await hung.value
            #expect(ticks().last?.storeUnanswered == nil)
            try await harness.stop(run)
        }
    }

    // Case 8: the stored refresh token was replaced during the call (an
    // `import --replace`): the stored one stands, and the pair the gateway
    // issued is handed over to be kept, logged with the seller, never with
    // the token.
    @Test(arguments: Backend.available)
    func aGrantThatLosesTheFenceIsHandedOverToBeKept(_ backend: Backend) async throws {
        try await SchedulerOverStore.with(backend) { harness in
            try await harness.enroll("s1")
            let initial = try await harness.stored("s1").refreshToken
            await harness.gateway.script("s1", .hold)
            let run = try await harness.driver.start()
            await harness.driver.fireIfDue()
            try await waitUntil("the call is in flight") { await harness.gateway.heldCount == 1 }

            let replaced = makeToken("rt-replaced")
            _ = try await harness.subject.store.importAccounts(
                [ImportRecord(sellerID: "s1", refreshToken: replaced)], replace: true, batchSize: nil,
                now: harness.clock.now())
            await harness.gateway.release("s1", with: .succeed)
            await harness.driver.settle()

            #expect(try await harness.stored("s1").refreshToken == replaced)
            let kept = try #require(harness.handedOver.first { $0.sellerID == "s1" }?.grant.refreshToken)
            #expect(harness.handedOver.count == 1)
            #expect(kept != replaced)
            #expect(kept != initial)
            #expect(harness.logs.rendered.contains { $0.contains("fence_lost") && $0.contains("s1") })
            #expect(harness.logs.rendered.allSatisfy { !$0.contains(kept.exposedValue) })
            try await harness.stop(run)
        }
    }

    // Case 6: a pair salvaged beside the store (the disk was full) is stored
    // at the next start when it still applies (its seller still holds the
    // token it replaces); one that no longer applies is left for the
    // operator. The salvage directory is the storage directory on SQLite,
    // the state directory on PostgreSQL.
    @Test(arguments: Backend.available)
    func theNextStartStoresSalvagedPairsThatStillApply(_ backend: Backend) async throws {
        let subject = try await backend.open()
        let salvage = try ScratchDirectory()
        let directory = subject.scratch?.path ?? salvage.path
        let store = subject.store
        let now = currentTime()
        let before = (a: makeToken("RT-a"), b: makeToken("RT-b"))
        _ = try await store.enroll(
            grant: makeGrant(seller: "7001", refresh: before.a, receivedAt: now), nextRefreshAt: now, now: now)
        _ = try await store.enroll(
            grant: makeGrant(seller: "7002", refresh: before.b, receivedAt: now), nextRefreshAt: now, now: now)
        let rotated = (a: makeToken("RT-a2"), b: makeToken("RT-b2"))
        let applies = try GrantSalvage.save(
            makeGrant(seller: "7001", refresh: rotated.a, receivedAt: now), account: "7001", replacing: before.a,
            directory: directory, now: now)
        let stale = try GrantSalvage.save(
            makeGrant(seller: "7002", refresh: rotated.b, receivedAt: now), account: "7002",
            replacing: makeToken("RT-older"), directory: directory, now: now)
        let logs = LogRecorder()

        let stored = await GrantSalvage.recover(into: store, directory: directory, now: now, logger: logs.logger())

        #expect(stored == 1)
        #expect(try await store.account("7001")?.refreshToken == rotated.a)
        #expect(try await store.account("7001")?.status == .active)
        #expect(try await store.account("7002")?.refreshToken == before.b)
        #expect(!FileManager.default.fileExists(atPath: applies))
        #expect(FileManager.default.fileExists(atPath: stale))
        #expect(logs.rendered.contains { $0.contains("left for the operator") && $0.contains("7002") })
        let secrets = [before.a, before.b, rotated.a, rotated.b].map(\.exposedValue)
        #expect(logs.rendered.allSatisfy { line in !secrets.contains { line.contains($0) } })
        try await subject.close()
    }
}
