import Logging
import SchedulerTesting
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

@Suite(.timeLimit(.minutes(1)))
struct LifecycleTests {
    @Test func stopWaitsForTheRefreshInFlightToCommit() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("busy", due: .zero)
        await harness.addAccount("next", due: .seconds(1))
        await harness.gateway.script("busy", .hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("the call is in flight") { await harness.gateway.heldCount == 1 }

        let returned = Atomic<Bool>(false)
        let watcher = Task {
            try await run.value
            returned.store(true, ordering: .sequentiallyConsistent)
        }
        run.cancel()
        try await waitUntil("the scheduler is stopping") { await harness.scheduler.snapshot().isStopping }

        // No new work while stopping, and run() has not returned.
        await harness.advanceWithoutWaiting(by: .seconds(2))
        #expect(await harness.gateway.calls(for: "next") == 0)
        #expect(returned.load(ordering: .sequentiallyConsistent) == false)

        await harness.gateway.release("busy")
        try await watcher.value
        #expect(await harness.store.account("busy")?.refreshToken != Secret("rt-busy-initial"))
        #expect(harness.events.refreshed("busy").count == 1)
        #expect(harness.events.isStopped)
        #expect(harness.timer.isCancelled)
    }

    /// An attempt that holds its lease and waits for a call slot gives the
    /// lease back at a stop without calling.
    @Test func anAttemptWaitingForACallSlotGivesUpItsLeaseAtAStop() async throws {
        let harness = SchedulerHarness(concurrency: 1)
        await harness.addAccount("busy", due: .seconds(-10))
        await harness.addAccount("waiting", due: .zero)
        await harness.gateway.script("busy", .hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("the call is in flight") { await harness.gateway.heldCount == 1 }
        try await waitUntil("the next attempt holds its lease") {
            await harness.store.account("waiting")?.lease?.owner == SchedulerHarness.owner
        }

        run.cancel()
        try await waitUntil("the waiting attempt gave its lease back") {
            await harness.store.account("waiting")?.lease == nil
        }
        await harness.gateway.release("busy")
        try await run.value
        #expect(await harness.gateway.calls(for: "waiting") == 0)
        #expect(await harness.store.account("waiting")?.refreshToken == Secret("rt-waiting-initial"))
        #expect(harness.events.refreshed("busy").count == 1)
    }

    @Test func stopGivesUpWaitingAfterTheGracePeriod() async throws {
        let harness = SchedulerHarness(shutdownGracePeriod: .seconds(8))
        await harness.addAccount("stuck", due: .zero)
        await harness.gateway.script("stuck", .hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("the call is in flight") { await harness.gateway.heldCount == 1 }

        await harness.scheduler.stop()
        try await waitUntil("the scheduler is stopping") { await harness.scheduler.snapshot().isStopping }
        await harness.advanceWithoutWaiting(by: .seconds(8))
        try await run.value

        #expect(
            harness.logs.all.contains { $0.message.contains("still in flight") && $0.metadata["sellers"] == "stuck" })
        await harness.gateway.release("stuck")
    }

    @Test func runFailsWhenTheScheduleCannotBeLoaded() async throws {
        let harness = SchedulerHarness()
        await harness.store.fail(.loadSchedule)
        await #expect(throws: FakeAccountStore.DiskFull.self) {
            try await harness.scheduler.run()
        }
        await #expect(throws: RefreshSchedulerError.alreadyStarted) {
            try await harness.scheduler.run()
        }
    }

    @Test func refreshNowWithoutRunRefreshesOnceAndReportsEachOutcome() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("later", due: .seconds(3600))
        await harness.addAccount("dead", due: .seconds(3600))
        await harness.gateway.script("dead", .fail(.illegalRefreshToken))

        let outcomes = await harness.scheduler.refreshNow(["later", "missing", "dead", "later"])

        #expect(outcomes.count == 3)
        if case .refreshed(_, let nextDue, false) = outcomes["later"] {
            #expect(nextDue > harness.now)
        } else {
            Issue.record("later: \(String(describing: outcomes["later"]))")
        }
        #expect(outcomes["missing"] == .notFound)
        #expect(outcomes["dead"] == .reauthRequired(reason: "IllegalRefreshToken", requestID: "req-dead"))
        // A one-shot reschedules nothing and leaves no timer work behind.
        #expect(await harness.scheduler.snapshot().scheduled == 0)
        #expect(await harness.gateway.violations.isEmpty)
    }

    @Test func refreshNowInARunningSchedulerJumpsTheQueue() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s1", due: .seconds(3600))
        let run = try await harness.start()

        let outcomes = await harness.scheduler.refreshNow(["s1"])

        guard case .refreshed(_, let nextDue, _) = outcomes["s1"] else {
            Issue.record("s1: \(String(describing: outcomes["s1"]))")
            return
        }
        #expect(await harness.scheduler.deadline(of: "s1") == nextDue)
        #expect(await harness.gateway.calls(for: "s1") == 1)
        run.cancel()
        try await run.value
    }

    @Test func ticksComeFromTheSchedulersOwnLoop() async throws {
        let harness = SchedulerHarness(tickInterval: .seconds(2))
        let run = try await harness.start()
        await harness.advance(by: .seconds(10))
        #expect(harness.events.ticks == 5)
        run.cancel()
        try await run.value
    }

    @Test func clockSetBackKeepsTheTicksComing() async throws {
        let harness = SchedulerHarness(tickInterval: .seconds(5))
        let run = try await harness.start()
        await harness.advance(by: .seconds(5))
        let ticks = harness.events.ticks

        harness.clock.step(by: .seconds(-3600))
        // The real timer never sleeps past its cap, so it fires soon anyway.
        await harness.timer.fire()
        await harness.settle()
        // The next tick keeps its distance: 5 s after the last, not an hour.
        #expect(harness.timer.deadline == harness.now + .seconds(5))
        await harness.advance(by: .seconds(5))
        #expect(harness.events.ticks == ticks + 1)
        run.cancel()
        try await run.value
    }
}
