import SchedulerTesting
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

@Suite(.timeLimit(.minutes(1)))
struct SchedulingTests {
    @Test func loadingManyAccountsArmsOneTimerOnceNotOncePerAccount() async throws {
        let harness = SchedulerHarness()
        for index in 0..<1000 {
            await harness.addAccount("seller-\(index)", due: .seconds(600 + Int64(index)))
        }
        let run = try await harness.start()

        let snapshot = await harness.scheduler.snapshot()
        #expect(snapshot.scheduled == 1000)
        #expect(snapshot.nextDue == harness.now + .seconds(600))
        #expect(harness.timer.armCount == 1)
        // The tick comes first; nothing is due before it.
        #expect(harness.timer.deadline == harness.now + .seconds(5))
        #expect(await harness.gateway.calls.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func idleSchedulerWakesOnlyForTicks() async throws {
        let harness = SchedulerHarness(tickInterval: .seconds(5))
        await harness.addAccount("far", due: .seconds(3600))
        let run = try await harness.start()

        await harness.advance(by: .seconds(60))

        // 12 ticks in a minute, each one wake-up; no refresh was due.
        #expect(harness.events.ticks == 12)
        #expect(harness.timer.armCount <= 13)
        #expect(await harness.gateway.calls.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func refreshedAccountIsRescheduledAtThePolicyTime() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s1", due: .zero)
        let run = try await harness.start()
        await harness.settle()

        let start = harness.now
        let stored = try #require(await harness.store.account("s1"))
        let next = try #require(stored.nextRefreshAt)
        // remaining_fraction 0.2 and jitter 0.05 of one hour: 45 to 48 minutes on.
        #expect(next >= start + .seconds(2700) && next <= start + .seconds(2880))
        #expect(await harness.scheduler.deadline(of: "s1") == next)
        #expect(harness.events.refreshed("s1").map(\.nextDue) == [next])
        #expect(stored.refreshToken != Secret("rt-s1-initial"))
        #expect(stored.lease == nil)

        await harness.advance(to: next - .milliseconds(1))
        #expect(await harness.gateway.calls(for: "s1") == 1)
        await harness.advance(to: next)
        #expect(await harness.gateway.calls(for: "s1") == 2)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func overdueAccountsDrainOldestFirst() async throws {
        let harness = SchedulerHarness(concurrency: 1)
        let ages = [7, 3, 9, 1, 5, 8, 2, 6, 4, 10]
        for age in ages {
            await harness.addAccount("overdue-\(age)", due: .seconds(-60 * Int64(age)))
        }
        await harness.addAccount("later", due: .seconds(600))
        let run = try await harness.start()
        await harness.settle()

        let order = await harness.gateway.calls.map(\.sellerID)
        #expect(order == ages.sorted(by: >).map { "overdue-\($0)" })
        run.cancel()
        try await run.value
    }

    @Test func concurrencyLimitIsNeverExceeded() async throws {
        let harness = SchedulerHarness(concurrency: 3)
        for index in 0..<20 { await harness.addAccount("s\(index)") }
        await harness.gateway.setDefault(.hold)
        let run = try await harness.start()
        await harness.fireIfDue()

        for released in 0..<20 {
            try await waitUntil("a call is held") { await harness.gateway.heldCount == min(3, 20 - released) }
            #expect(await harness.scheduler.snapshot().inFlight <= 3)
            await harness.gateway.release()
        }
        try await waitUntil("all are refreshed") { await harness.scheduler.snapshot().refreshed == 20 }
        #expect(await harness.gateway.maxInFlight == 3)
        #expect(await harness.gateway.calls.count == 20)
        run.cancel()
        try await run.value
    }

    /// `refresh.concurrency` counts calls at the gateway: the next attempts
    /// (three for each slot) take their lease while the calls are in flight,
    /// and call the moment a slot frees, earliest deadline first.
    @Test func theNextAttemptsLeaseIsTakenWhileTheCallIsInFlight() async throws {
        let harness = SchedulerHarness(concurrency: 1)
        for index in 0..<6 { await harness.addAccount("s\(index)", due: .seconds(-60 * Int64(6 - index))) }
        await harness.gateway.setDefault(.hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("one call is held") { await harness.gateway.heldCount == 1 }
        try await waitUntil("the next attempts hold their lease") { await harness.store.count(.acquireLease) == 4 }
        for waiting: AccountKey in ["s1", "s2", "s3"] {
            #expect(await harness.store.account(waiting)?.lease?.owner == SchedulerHarness.owner)
        }
        #expect(await harness.store.account("s4")?.lease == nil)
        #expect(await harness.scheduler.snapshot().inFlight == 1)

        for released in 0..<6 {
            try await waitUntil("a call is held") { await harness.gateway.heldCount == 1 }
            #expect(await harness.gateway.calls.count == released + 1)
            await harness.gateway.release()
        }
        try await waitUntil("all are refreshed") { await harness.scheduler.snapshot().refreshed == 6 }
        #expect(await harness.gateway.maxInFlight == 1)
        #expect(await harness.gateway.calls.map(\.sellerID) == ["s0", "s1", "s2", "s3", "s4", "s5"])
        #expect(await harness.store.count(.acquireLease) == 6)
        run.cancel()
        try await run.value
    }

    /// An attempt that waited for its slot longer than a third of its lease
    /// renews the lease before it calls: the call never outlives it.
    @Test func aLeaseAgedWhileWaitingForASlotIsRenewedBeforeTheCall() async throws {
        let harness = SchedulerHarness(concurrency: 1)
        await harness.addAccount("first", due: .seconds(-10))
        await harness.addAccount("second", due: .zero)
        await harness.gateway.script("first", .hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("the first call is held") { await harness.gateway.heldCount == 1 }
        try await waitUntil("the second holds its lease") { await harness.store.count(.acquireLease) == 2 }
        let firstLease = try #require(await harness.store.account("second")?.lease)

        await harness.advanceWithoutWaiting(by: .seconds(40))
        await harness.gateway.release("first")
        try await waitUntil("the second is refreshed") { await harness.scheduler.snapshot().refreshed == 2 }
        #expect(await harness.store.count(.acquireLease) == 3, "renewed once, before its call")
        let calledAt = try #require(await harness.gateway.calls.last { $0.sellerID == "second" }?.at)
        #expect(calledAt >= firstLease.expiresAt - .seconds(50), "called 40 s into a 90 s lease, after renewing it")
        run.cancel()
        try await run.value
    }

    @Test func raisingConcurrencyAtRunTimeStartsMoreCallsAtOnce() async throws {
        let harness = SchedulerHarness(concurrency: 1)
        for index in 0..<6 { await harness.addAccount("s\(index)") }
        await harness.gateway.setDefault(.hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("one call is held") { await harness.gateway.heldCount == 1 }

        var raised = harness.configuration
        raised.concurrency = 3
        raised.leaseOwner = "someone-else"
        await harness.scheduler.update(configuration: raised)
        try await waitUntil("three calls are held") { await harness.gateway.heldCount == 3 }
        #expect(await harness.scheduler.snapshot().inFlight == 3)

        await harness.gateway.setDefault(.succeed)
        while await harness.gateway.heldCount > 0 { await harness.gateway.release() }
        try await waitUntil("all are refreshed") { await harness.scheduler.snapshot().refreshed == 6 }
        #expect(await harness.gateway.maxInFlight == 3)
        // The lease owner does not change under a running scheduler.
        #expect(await harness.store.leaseOwners.allSatisfy { $0 == SchedulerHarness.owner })
        run.cancel()
        try await run.value
    }

    @Test func callRateStaysWithinTheLimit() async throws {
        let harness = SchedulerHarness(concurrency: 50, maxCallsPerSecond: 10)
        for index in 0..<40 { await harness.addAccount("s\(index)") }
        let run = try await harness.start()
        let start = harness.now

        for step in 0...40 {
            await harness.advance(to: start + .milliseconds(50 * Int64(step)))
            let elapsedSeconds = Double(50 * step) / 1000
            let calls = await harness.gateway.calls.count
            #expect(Double(calls) <= 1 + 10 * elapsedSeconds + 1e-9, "at \(elapsedSeconds) s")
        }
        // Evenly spaced: one at once, then one every 100 ms.
        #expect(await harness.gateway.calls.count == 21)
        let times = await harness.gateway.calls.map { ($0.at - start).wholeMilliseconds }
        #expect(times == (0...20).map { Int64($0) * 100 })
        run.cancel()
        try await run.value
    }

    /// 50 sellers due together at 10 calls/s need 5 s of calls: the earliest
    /// start early, so that none starts after its deadline, and no sooner
    /// than that needs.
    @Test func accountsFallingDueTogetherStartEarlyEnoughForTheRateLimit() async throws {
        let harness = SchedulerHarness(concurrency: 50, maxCallsPerSecond: 10)
        for index in 0..<50 { await harness.addAccount("s\(index)", due: .seconds(60)) }
        let run = try await harness.start()
        let start = harness.now

        await harness.advance(by: .seconds(61))

        let times = await harness.gateway.calls.map { ($0.at - start).wholeMilliseconds }
        #expect(times.count == 50)
        // The rate holds, and the last call starts at the deadline, not after.
        #expect(times == (0..<50).map { 55_100 + Int64($0) * 100 })
        let delays = harness.events.events.compactMap { event -> Duration? in
            if case .started(_, let delay) = event { delay } else { nil }
        }
        #expect(delays.count == 50)
        #expect(delays.allSatisfy { $0 == .zero })
        run.cancel()
        try await run.value
    }

    /// A lead is planned again when the deadlines change, not at every tick:
    /// planning sorts every deadline, which at a million idle sellers cost
    /// 0.3 s of CPU a minute (issue 19). The calls a second needed move with
    /// the clock, so an unchanged schedule is still planned every 10 minutes.
    @Test func anUnchangedScheduleKeepsItsLeadWithoutPlanningAtEachTick() async throws {
        let harness = SchedulerHarness(concurrency: 50, maxCallsPerSecond: 10)
        for index in 0..<50 { await harness.addAccount("s\(index)", due: .seconds(3600)) }
        let run = try await harness.start()
        await harness.advance(by: .seconds(30))
        #expect(await harness.scheduler.lead == .milliseconds(4900))
        let planned = try #require(await harness.scheduler.lastLeadPlan)

        await harness.advance(by: .seconds(300))
        #expect(await harness.scheduler.lastLeadPlan == planned, "no deadline changed: not planned again")
        await harness.advance(by: .seconds(300))
        #expect(await harness.scheduler.lastLeadPlan != planned, "planned again after 10 minutes")
        #expect(await harness.scheduler.lead == .milliseconds(4900))
        #expect(await harness.gateway.calls.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func withoutARateLimitNothingStartsEarly() async throws {
        let harness = SchedulerHarness(concurrency: 50, maxCallsPerSecond: nil)
        for index in 0..<50 { await harness.addAccount("s\(index)", due: .seconds(60)) }
        let run = try await harness.start()
        let start = harness.now

        await harness.advance(by: .seconds(59))
        #expect(await harness.gateway.calls.isEmpty)
        await harness.advance(by: .seconds(2))
        let times = await harness.gateway.calls.map { ($0.at - start).wholeMilliseconds }
        #expect(times == Array(repeating: 60_000, count: 50))
        run.cancel()
        try await run.value
    }

    /// A start late because the rate limit held it back is reported with its delay.
    @Test func aStartHeldBackByTheRateIsReportedLate() async throws {
        let harness = SchedulerHarness(concurrency: 50, maxCallsPerSecond: 10)
        for index in 0..<3 { await harness.addAccount("s\(index)", due: .zero) }
        let run = try await harness.start()

        await harness.advance(by: .seconds(1))

        let delays = harness.events.events.compactMap { event -> Int64? in
            if case .started(_, let delay) = event { delay.wholeMilliseconds } else { nil }
        }
        #expect(delays.sorted() == [0, 100, 200])
        run.cancel()
        try await run.value
    }

    /// A deadline stored under a wrong clock (a day late) is capped at start
    /// by the gateway's expiry, and the attempt at the capped time is made,
    /// not skipped as "not due yet".
    @Test func aCappedDeadlineIsRefreshedAtTheCapNotSkipped() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("late", due: .seconds(86_400), expiresIn: .seconds(3600), lifetime: .seconds(3600))
        let run = try await harness.start()
        let start = harness.now

        await harness.advance(by: .seconds(2879))
        #expect(await harness.gateway.calls.isEmpty)
        await harness.advance(by: .seconds(2))
        let calls = await harness.gateway.calls.map { ($0.at - start).wholeMilliseconds }
        #expect(calls == [2_880_000])
        run.cancel()
        try await run.value
    }

    @Test func throttlingPausesEveryCallForTheStatedTime() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("limited", due: .zero)
        for index in 0..<3 { await harness.addAccount("other\(index)", due: .seconds(1)) }
        await harness.gateway.script("limited", .fail(.throttled(seconds: 30)))
        let run = try await harness.start()
        let start = harness.now
        await harness.settle()

        #expect(await harness.scheduler.snapshot().pausedUntil == start + .seconds(30))
        // It stays active and keeps its token; the failure is counted.
        let limited = try #require(await harness.store.account("limited"))
        #expect(limited.status == .active && limited.failedAttempts == 1)
        let failure = try #require(harness.events.failures.first)
        #expect(failure.account == "limited")
        #expect(failure.nextDue == start + .seconds(30))

        await harness.advance(to: start + .milliseconds(29_999))
        #expect(await harness.gateway.calls.count == 1)

        await harness.advance(to: start + .seconds(30))
        for index in 0..<3 { #expect(await harness.gateway.calls(for: "other\(index)") == 1) }
        #expect(await harness.gateway.calls(for: "limited") == 2)
        #expect(await harness.scheduler.snapshot().pausedUntil == nil)
        run.cancel()
        try await run.value
    }

    @Test func leaseHeldByAnotherProcessIsRetriedAfterItExpires() async throws {
        let harness = SchedulerHarness()
        let start = harness.now
        await harness.addAccount(
            "shared", due: .zero, lease: Lease(owner: "cli-4242", expiresAt: start + .seconds(60)))
        let run = try await harness.start()
        await harness.settle()

        #expect(await harness.gateway.calls.isEmpty)
        #expect(await harness.scheduler.deadline(of: "shared") == start + .seconds(61))
        await harness.advance(to: start + .seconds(61))
        #expect(await harness.gateway.calls(for: "shared") == 1)
        #expect(await harness.store.account("shared")?.lease == nil)
        run.cancel()
        try await run.value
    }

    @Test func accountRefreshedByAnotherProcessMeanwhileIsSkipped() async throws {
        let harness = SchedulerHarness()
        let start = harness.now
        await harness.addAccount("s1", due: .seconds(10))
        let run = try await harness.start()
        // Another process refreshes it; our change feed has not seen it yet.
        await harness.store.modifyQuietly("s1") {
            $0.refreshToken = Secret("rt-s1-by-cli")
            $0.accessToken = Secret("at-s1-by-cli")
            $0.expireTime = start + .seconds(4500)
            $0.refreshedAt = start + .seconds(900)
            $0.nextRefreshAt = start + .seconds(3600)
        }
        await harness.gateway.register("s1", refreshToken: Secret("rt-s1-by-cli"))

        await harness.advance(to: start + .seconds(10))

        #expect(await harness.gateway.calls.isEmpty)
        #expect(await harness.store.account("s1")?.lease == nil)
        #expect(await harness.scheduler.deadline(of: "s1") == start + .seconds(3600))
        run.cancel()
        try await run.value
    }

    @Test func accountsChangedByOtherProcessesArePickedUpAtTheNextTick() async throws {
        let harness = SchedulerHarness(tickInterval: .seconds(5))
        let start = harness.now
        await harness.addAccount("kept", due: .seconds(30))
        await harness.addAccount("disabled-later", due: .seconds(30))
        let run = try await harness.start()

        // `tokenkeeper add` and `disable` while the daemon runs.
        await harness.addAccount("added", due: .seconds(2))
        await harness.store.modify("disabled-later") { $0.status = .disabled }

        await harness.advance(to: start + .seconds(4))
        #expect(await harness.gateway.calls.isEmpty)
        await harness.advance(to: start + .seconds(5))
        #expect(await harness.gateway.calls(for: "added") == 1)
        #expect(await harness.scheduler.deadline(of: "disabled-later") == nil)

        await harness.advance(to: start + .seconds(60))
        #expect(await harness.gateway.calls(for: "kept") == 1)
        #expect(await harness.gateway.calls(for: "disabled-later") == 0)
        run.cancel()
        try await run.value
    }

    @Test func removedAccountIsDroppedWhenItsTurnComes() async throws {
        let harness = SchedulerHarness(tickInterval: .seconds(60))
        await harness.addAccount("gone", due: .seconds(1))
        let run = try await harness.start()
        await harness.store.delete("gone")

        await harness.advance(by: .seconds(2))

        #expect(await harness.gateway.calls.isEmpty)
        #expect(await harness.scheduler.deadline(of: "gone") == nil)
        run.cancel()
        try await run.value
    }
}
