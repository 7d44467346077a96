import Logging
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

/// The scheduler's side of the write path (issue 15): a pair that loses the
/// fence is handed over to be kept, store failures back off per seller and
/// end at the first write that works, and a store that hangs does not stop
/// the scheduler's own heartbeat.
@Suite(.timeLimit(.minutes(1)))
struct SchedulerWritePathTests {
    // Case 8: the stored refresh token was replaced during the call (an
    // `import --replace`): the stored one stands, and the pair the gateway
    // issued is handed over, not dropped.
    @Test func aGrantThatLosesTheFenceIsHandedOverToBeKept() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s1")
        await harness.gateway.script("s1", .hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("the call is in flight") { await harness.gateway.heldCount == 1 }

        await harness.store.modify("s1") { $0.refreshToken = Secret("rt-s1-replaced") }
        await harness.gateway.release("s1", with: .succeed)
        await harness.settle()

        #expect(await harness.store.account("s1")?.refreshToken == Secret("rt-s1-replaced"))
        let handedOver = harness.events.events.compactMap { event -> TokenGrant? in
            if case .rotationUnstored(let sellerID, let grant, _) = event, sellerID == "s1" { return grant }
            return nil
        }
        #expect(handedOver.count == 1)
        let kept = try #require(handedOver.first?.refreshToken)
        #expect(kept != Secret("rt-s1-replaced"))
        #expect(kept != Secret("rt-s1-initial"))
        #expect(harness.logs.rendered.contains { $0.contains("fence_lost") && $0.contains("s1") })
        #expect(harness.logs.rendered.allSatisfy { !$0.contains(kept.exposedValue) })
        run.cancel()
        try await run.value
    }

    // Case 4: a batch of leases that fails (the store briefly down) backs
    // each seller off by its own failures, not by a process-wide count; the
    // first write that works starts them all again at once.
    @Test func leaseFailuresBackOffPerSellerAndEndAtTheFirstWriteThatWorks() async throws {
        let harness = SchedulerHarness(concurrency: 8)
        for index in 0..<8 { await harness.addAccount("s\(index)") }
        await harness.store.fail(.acquireLease, times: 8)
        let start = harness.now
        let run = try await harness.start()
        await harness.settle()

        // Each seller failed once: each waits the first step, 1 s.
        for index in 0..<8 {
            let deadline = await harness.scheduler.deadline(of: "s\(index)")
            #expect(deadline == start + .seconds(1), "s\(index): \(String(describing: deadline))")
        }
        await harness.advance(by: .seconds(1))
        for index in 0..<8 {
            #expect(harness.events.refreshed("s\(index)").count == 1, "s\(index)")
        }
        run.cancel()
        try await run.value
    }

    // Case 7: the heartbeat reflects the scheduler, not the store: a read
    // that hangs is reported in the snapshot (STATUS=) and the log, and the
    // ticks (WATCHDOG=1) go on.
    @Test func aStoreThatHangsIsReportedAndTheHeartbeatGoesOn() async throws {
        let harness = SchedulerHarness(tickInterval: .seconds(5))
        await harness.addAccount("s1", due: .seconds(3600))
        let run = try await harness.start()
        await harness.settle()
        func ticks() -> [SchedulerSnapshot] {
            harness.events.events.compactMap { event in
                if case .tick(let snapshot) = event { return snapshot }
                return nil
            }
        }
        let before = ticks().count
        await harness.store.hangChanges()
        harness.clock.advance(by: .seconds(5))
        let hung = Task { await harness.timer.fire() }
        try await waitUntil("the tick's read is under way") { await harness.store.hangingCalls == 1 }
        for _ in 0..<4 {
            let deadline = try #require(harness.timer.deadline, "the timer was not armed while the store hangs")
            harness.clock.set(max(deadline, harness.now))
            await harness.timer.fire()
        }
        #expect(ticks().count >= before + 4)
        #expect(ticks().last?.storeUnanswered != nil)
        #expect(harness.logs.rendered.contains { $0.contains("has not answered") })
        await harness.store.endHang()
        await hung.value
        #expect(ticks().last?.storeUnanswered == nil)
        run.cancel()
        try await run.value
    }

    // Case 3: another process's write lock (an import chunk, a CLI command)
    // is contention: no DEGRADED, no critical line, nothing held back; the
    // pair and the leases go through as soon as the lock is gone.
    @Test func anotherProcesssLockIsContentionNotFailure() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s1")
        await harness.addAccount("s2")
        await harness.store.contend(.commitRotation, times: 3)
        await harness.store.contend(.acquireLease, times: 1)
        let start = harness.now
        let run = try await harness.start()
        await harness.advance(by: .seconds(1))

        #expect(harness.events.refreshed("s1").count == 1)
        #expect(harness.events.refreshed("s2").count == 1)
        #expect(harness.events.degraded.isEmpty)
        #expect(harness.logs.lines(atLeast: .error).isEmpty, "\(harness.logs.lines(atLeast: .error).map(\.message))")
        #expect(harness.logs.lines(atLeast: .warning).contains { $0.message.contains("write lock") })
        for seller in ["s1", "s2"] {
            let stored = try #require(await harness.store.account(seller))
            #expect(stored.refreshedAt.map { $0 < start + .seconds(1) } == true, "\(seller)")
        }
        run.cancel()
        try await run.value
    }

    // Case 5: pairs refused for their sellers' own values leave their slots:
    // four of them (the concurrency) no longer stall the fleet; each shows
    // its reason on the seller, keeps its lease, is retried on its own
    // backoff without another call, and is handed over at a stop.
    @Test func pairsRefusedForTheirOwnValuesLeaveTheirSlots() async throws {
        let harness = SchedulerHarness(concurrency: 4)
        let refused = ["r1", "r2", "r3", "r4"]
        for seller in refused {
            await harness.addAccount(seller)
            await harness.store.refuseValues(of: seller)
        }
        await harness.addAccount("ok", due: .seconds(10))
        let run = try await harness.start()
        await harness.advance(by: .seconds(10))

        #expect(harness.events.refreshed("ok").count == 1, "a seller due later is refreshed on time")
        for seller in refused {
            let stored = try #require(await harness.store.account(seller))
            #expect(stored.lastError?.hasPrefix("StoreRefused") == true, "\(seller): \(stored.lastError ?? "nil")")
            #expect(stored.lease?.owner == SchedulerHarness.owner, "\(seller) keeps its lease")
        }
        #expect(await harness.scheduler.snapshot().pairsRefused == 4)
        #expect(harness.events.degraded.isEmpty)
        await harness.advance(by: .seconds(60))
        for seller in refused {
            #expect(await harness.gateway.calls(for: seller) == 1, "\(seller)'s refresh token was never sent again")
            #expect(await harness.store.count(.commitRotation) > 8)
        }

        run.cancel()
        try await run.value
        let handedOver = harness.events.events.compactMap { event -> String? in
            if case .rotationUnstored(let sellerID, _, _) = event { return sellerID }
            return nil
        }
        #expect(handedOver.sorted() == refused)
    }
}
