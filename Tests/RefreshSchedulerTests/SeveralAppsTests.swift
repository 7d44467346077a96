import Logging
import SchedulerTesting
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

private func ae(_ sellerID: String) -> AccountKey {
    AccountKey(app: "ae", sellerID: sellerID)
}

private func lazada(_ sellerID: String) -> AccountKey {
    AccountKey(app: "lazada", sellerID: sellerID)
}

/// Several apps in one scheduler: one heap and one timer, and each app on
/// its own (its gateway, call rate, throttling, configuration trouble and
/// mass-rejection breaker).
@Suite(.timeLimit(.minutes(1)))
struct SeveralAppsTests {
    @Test func eachAppsCallsGoToItsOwnGatewayAndOneSellerIDUnderTwoAppsIsTwoAccounts() async throws {
        let harness = SchedulerHarness(apps: [.default, "lazada"])
        let defaultGateway = harness.gateway(.default)
        let lazadaGateway = harness.gateway("lazada")
        await harness.addAccount("s1")
        await harness.addAccount("s2")
        await harness.addAccount(lazada("s1"))
        await harness.addAccount(lazada("s3"))
        let run = try await harness.start()
        await harness.settle()

        #expect(await defaultGateway.calls.map(\.account).sorted() == ["s1", "s2"])
        #expect(await lazadaGateway.calls.map(\.account).sorted() == [lazada("s1"), lazada("s3")])
        let first = try #require(await harness.store.account("s1"))
        let second = try #require(await harness.store.account(lazada("s1")))
        #expect(first.refreshToken != second.refreshToken, "the same seller id under two apps has its own tokens")
        #expect(first.refreshToken != Secret("rt-s1-initial"))
        #expect(second.refreshToken != Secret("rt-lazada/s1-initial"))
        for key: AccountKey in ["s1", "s2", lazada("s1"), lazada("s3")] {
            #expect(harness.events.refreshed(key).count == 1, "\(key)")
        }

        // Again and again, each through its own gateway.
        await harness.advance(by: .seconds(3 * 3600))
        #expect(await defaultGateway.calls.allSatisfy { $0.account.app == .default })
        #expect(await lazadaGateway.calls.allSatisfy { $0.account.app == "lazada" })
        #expect(await defaultGateway.calls(for: "s1") >= 3)
        #expect(await lazadaGateway.calls(for: lazada("s1")) >= 3)
        #expect(await defaultGateway.violations.isEmpty)
        #expect(await lazadaGateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func oneAppsThrottlingPausesOnlyThatAppsCalls() async throws {
        let harness = SchedulerHarness(apps: ["ae", "lazada"])
        let start = harness.now
        await harness.addAccount(ae("limited"), due: .zero)
        await harness.addAccount(ae("a1"), due: .seconds(1))
        await harness.addAccount(ae("a2"), due: .seconds(5))
        await harness.addAccount(lazada("b1"), due: .seconds(1))
        await harness.addAccount(lazada("b2"), due: .seconds(10))
        await harness.gateway("ae").script(ae("limited"), .fail(.throttled(seconds: 30)))
        let run = try await harness.start()
        await harness.settle()

        let snapshot = await harness.scheduler.snapshot()
        #expect(snapshot.pausedApps == ["ae": start + .seconds(30)])
        #expect(snapshot.pausedUntil == start + .seconds(30))
        // The signing proxy's calls of ae wait too (the gateway bans the key, whoever calls).
        #expect(harness.scheduler.callBudgets.proxiedPause("ae", now: start) == start + .seconds(30))
        #expect(harness.scheduler.callBudgets.proxiedPause("lazada", now: start) == nil)

        await harness.advance(to: start + .milliseconds(29_999))
        #expect(await harness.gateway("ae").calls.count == 1, "ae waits out its pause")
        // lazada's sellers are refreshed at their deadlines, as if ae were not throttled.
        let lazadaTimes = await harness.gateway("lazada").calls.map { ($0.at - start).wholeMilliseconds }
        #expect(lazadaTimes == [1_000, 10_000])
        #expect(harness.events.refreshed(lazada("b1")).count == 1)
        #expect(harness.events.refreshed(lazada("b2")).count == 1)
        let lazadaDelays = harness.events.events.compactMap { event -> Duration? in
            if case .started(let account, let delay) = event, account.app == "lazada" { delay } else { nil }
        }
        #expect(lazadaDelays == [.zero, .zero])

        // ae's accounts that fell due during the pause were kept, not lost.
        #expect(await harness.scheduler.deadline(of: ae("a1")) == start + .seconds(1))
        #expect(await harness.scheduler.deadline(of: ae("a2")) == start + .seconds(5))
        await harness.advance(to: start + .seconds(30))
        #expect(await harness.gateway("ae").calls(for: ae("a1")) == 1)
        #expect(await harness.gateway("ae").calls(for: ae("a2")) == 1)
        #expect(await harness.gateway("ae").calls(for: ae("limited")) == 2)
        #expect(await harness.scheduler.snapshot().pausedApps.isEmpty)
        #expect(harness.events.reauthRequired.isEmpty)
        #expect(await harness.gateway("ae").violations.isEmpty)
        #expect(await harness.gateway("lazada").violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func oneAppsRejectedConfigurationHoldsOnlyItsSellersAndDegradedNamesTheApp() async throws {
        let harness = SchedulerHarness(concurrency: 4, apps: ["ae", "lazada"])
        let start = harness.now
        let aeSellers = ["a0", "a1", "a2"].map(ae)
        let lazadaSellers = ["b0", "b1", "b2"].map(lazada)
        for key in aeSellers + lazadaSellers { await harness.addAccount(key) }
        await harness.gateway("ae").setDefault(.fail(.badSignature))
        let run = try await harness.start()
        await harness.settle()

        #expect(harness.events.degraded == [.configuration(app: "ae", .badSignature)])
        #expect(await harness.scheduler.snapshot().degraded == [.configuration(app: "ae", .badSignature)])
        let errors = harness.logs.lines(atLeast: .error)
        #expect(errors.count == 1, "one line for the app's episode: \(errors.map(\.message))")
        #expect(errors.first?.metadata["app"] == "ae")
        for key in lazadaSellers { #expect(harness.events.refreshed(key).count == 1, "\(key)") }

        await harness.advance(by: .seconds(3 * 3600))

        // ae: one probe a minute; lazada: refreshed on schedule all along.
        let aeCalls = await harness.gateway("ae").calls
        let probeTimes = aeCalls.dropFirst(3).map { ($0.at - start).wholeMilliseconds }
        #expect(probeTimes == (1...180).map { Int64($0) * 60_000 })
        for key in lazadaSellers { #expect(harness.events.refreshed(key).count >= 3, "\(key)") }
        let lazadaDelays = harness.events.events.compactMap { event -> Duration? in
            if case .started(let account, let delay) = event, account.app == "lazada" { delay } else { nil }
        }
        #expect(lazadaDelays.count >= 9)
        #expect(lazadaDelays.allSatisfy { $0 == .zero }, "lazada's sellers start at their deadlines")
        for key in aeSellers {
            let account = try #require(await harness.store.account(key))
            #expect(account.status == .active)
            #expect(account.failedAttempts == 0)
        }
        #expect(harness.events.reauthRequired.isEmpty)

        // ae's secret fixed: its next probe works and its sellers go on.
        await harness.gateway("ae").setDefault(.succeed)
        await harness.advance(by: .seconds(60))
        #expect(harness.events.recovered == [.configuration(app: "ae", .badSignature)])
        for key in aeSellers { #expect(harness.events.refreshed(key).count == 1, "\(key)") }
        #expect(await harness.scheduler.snapshot().degraded.isEmpty)
        #expect(await harness.gateway("ae").violations.isEmpty)
        #expect(await harness.gateway("lazada").violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func oneAppsMassRejectionIsHeldByItsOwnBreakerAndAnotherAppsRevokedSellerIsMarked() async throws {
        let policy = MassRejectionPolicy(sellers: 3, fraction: 0.2, window: .seconds(600), hold: .seconds(6 * 3600))
        let harness = SchedulerHarness(
            concurrency: 4, probeInterval: .seconds(60), massRejection: policy, apps: ["ae", "lazada"])
        let aeSellers = (1...12).map { ae("m\($0)") }
        for key in aeSellers { await harness.addAccount(key, due: .zero) }
        await harness.addAccount(lazada("dead"), due: .seconds(10))
        await harness.addAccount(lazada("alive"), due: .seconds(10))
        await harness.gateway("ae").setDefault(.glitch(.illegalRefreshToken))
        await harness.gateway("lazada").script(lazada("dead"), .fail(.illegalRefreshToken))
        let run = try await harness.start()
        await harness.advance(by: .seconds(1))

        #expect(harness.events.reauthRequired.count == 3)
        let tripped = DegradedReason.massRejection(app: "ae", code: "IllegalRefreshToken", held: 1)
        #expect(harness.events.degraded.contains(tripped))

        // ae's breaker holds ae's rejections only: lazada's revoked seller is
        // marked at once, and its other seller is refreshed on time.
        await harness.advance(by: .seconds(10))
        let dead = try #require(await harness.store.account(lazada("dead")))
        #expect(dead.status == .reauthRequired)
        #expect(dead.statusReason == "IllegalRefreshToken")
        #expect(harness.events.reauthRequired.map(\.account).contains(lazada("dead")))
        #expect(harness.events.refreshed(lazada("alive")).count == 1)
        #expect(harness.events.degraded.allSatisfy { $0.app != "lazada" })
        let degraded = await harness.scheduler.snapshot().degraded
        #expect(degraded.contains { if case .massRejection(app: "ae", _, _) = $0 { true } else { false } })
        #expect(degraded.allSatisfy { $0.app == "ae" })

        // The glitch ends: ae's held sellers are released, none marked beyond the three.
        await harness.gateway("ae").setDefault(.succeed)
        await harness.advance(by: .seconds(61))
        let active = await aeSellers.asyncFilter { await harness.store.account($0)?.status == .active }
        #expect(active.count == 9)
        for key in active {
            #expect(harness.events.refreshed(key).count == 1, "\(key) is refreshed once the glitch ends")
        }
        #expect(harness.events.recovered.contains { $0.app == "ae" })
        #expect(await harness.gateway("lazada").violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func eachAppKeepsItsOwnCallRate() async throws {
        // ae has a rate of its own; lazada falls back to max_calls_per_second.
        let harness = SchedulerHarness(
            concurrency: 50, maxCallsPerSecond: 10, maxCallsPerSecondByApp: ["ae": 2], apps: ["ae", "lazada"])
        for index in 0..<6 { await harness.addAccount(ae("a\(index)"), due: .zero) }
        for index in 0..<20 { await harness.addAccount(lazada("b\(index)"), due: .zero) }
        let run = try await harness.start()
        let start = harness.now

        await harness.advance(to: start + .seconds(4))

        let aeTimes = await harness.gateway("ae").calls.map { ($0.at - start).wholeMilliseconds }
        let lazadaTimes = await harness.gateway("lazada").calls.map { ($0.at - start).wholeMilliseconds }
        #expect(aeTimes == (0..<6).map { Int64($0) * 500 }, "ae at its own 2 calls/s")
        #expect(lazadaTimes == (0..<20).map { Int64($0) * 100 }, "lazada at 10 calls/s, not slowed by ae's rate")
        run.cancel()
        try await run.value
    }

    @Test func aRateReloadedForOneAppChangesOnlyThatAppAndEachAppStartsEarlyByItsOwnLead() async throws {
        let harness = SchedulerHarness(concurrency: 50, maxCallsPerSecond: 10, apps: ["ae", "lazada"])
        let start = harness.now
        await harness.addAccount(ae("warm"), due: .zero)
        await harness.addAccount(lazada("warm"), due: .zero)
        let run = try await harness.start()
        await harness.settle()

        // SIGHUP gives lazada a slower rate of its own; ae keeps the common one.
        var reloaded = harness.configuration
        reloaded.maxCallsPerSecondByApp = ["lazada": 1]
        await harness.scheduler.update(configuration: reloaded)
        for index in 0..<3 { await harness.addAccount(ae("a\(index)"), due: .seconds(10)) }
        for index in 0..<3 { await harness.addAccount(lazada("b\(index)"), due: .seconds(10)) }
        await harness.advance(to: start + .seconds(13))

        // Three due together need 2 s of lazada's calls and 0.2 s of ae's:
        // each app starts its own that much early, and no later than due
        // (ae's bucket, idle since its first call, saved up a call and a
        // half: its second call follows the first by half the spacing;
        // lazada's bucket is new, made by the reload).
        let aeTimes = await harness.gateway("ae").calls.map { ($0.at - start).wholeMilliseconds }
        let lazadaTimes = await harness.gateway("lazada").calls.map { ($0.at - start).wholeMilliseconds }
        #expect(aeTimes == [0, 9_800, 9_850, 9_950])
        #expect(lazadaTimes == [0, 8_000, 9_000, 10_000])
        run.cancel()
        try await run.value
    }

    @Test func accountsOfAnAppWithoutAGatewayAreHeldUnmarkedAndGoOnOnceItHasOne() async throws {
        let harness = SchedulerHarness(apps: ["ae"])
        let orphan = AccountKey(app: "orphan", sellerID: "s2")
        await harness.addAccount(ae("s1"))
        await harness.addAccount(orphan)
        let run = try await harness.start()
        await harness.advance(by: .seconds(600))

        let notConfigured = RefreshScheduler.appNotConfigured("orphan")
        #expect(harness.events.degraded == [.configuration(app: "orphan", notConfigured)])
        #expect(harness.events.refreshed(ae("s1")).count == 1, "the configured app goes on")
        let held = try #require(await harness.store.account(orphan))
        #expect(held.status == .active)
        #expect(held.failedAttempts == 0 && held.lease == nil && held.lastError == nil)
        #expect(held.refreshToken == Secret("rt-orphan/s2-initial"))
        #expect(await harness.store.leaseOwners.count == 1, "no lease is taken for an account with nothing to call")
        let errors = harness.logs.lines(atLeast: .error)
        #expect(errors.count == 1, "said once: \(errors.map(\.message))")
        #expect(errors.first?.metadata["app"] == "orphan")
        #expect(await harness.scheduler.refreshNow([orphan]) == [orphan: .configurationRejected(notConfigured)])

        // A reload brings the app's gateway: it recovers and its seller is refreshed.
        let store = harness.store
        let orphanGateway = FakeTokenGateway(app: "orphan", clock: harness.clock) { key, token in
            await store.isCurrentRefreshToken(token, of: key)
        }
        await orphanGateway.register(orphan, refreshToken: held.refreshToken)
        await harness.scheduler.update(gateways: ["ae": harness.gateway("ae"), "orphan": orphanGateway])
        await harness.settle()
        #expect(harness.events.recovered == [.configuration(app: "orphan", notConfigured)])
        #expect(harness.events.refreshed(orphan).count == 1)
        #expect(await orphanGateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }
}

@Suite struct SetAsideTests {
    let t0 = Timestamp(millisecondsSince1970: 1_000_000)

    @Test func aSetAsideAccountStaysScheduledAndTheHeapMovesOnToOtherApps() {
        var queue = DeadlineQueue()
        queue.schedule(ae("a"), at: t0)
        queue.schedule(lazada("b"), at: t0 + .seconds(1))
        queue.schedule(ae("c"), at: t0 + .seconds(2))

        #expect(queue.peek()?.key == ae("a"))
        queue.setAsideEarliest()
        #expect(queue.peek()?.key == lazada("b"))
        #expect(queue.count == 3)
        #expect(queue.contains(ae("a")))
        #expect(queue.due(of: ae("a")) == t0)
        #expect(queue.appsWithSetAside == ["ae"])
        #expect(queue.firstSetAside(of: "ae")?.key == ae("a"))
        #expect(queue.firstSetAside(of: "lazada") == nil)

        #expect(queue.popSetAside(of: "ae")?.key == ae("a"))
        #expect(!queue.contains(ae("a")))
        #expect(queue.count == 2)
        #expect(queue.popSetAside(of: "ae") == nil)
    }

    @Test func aSetAsideAccountRescheduledOrRemovedIsNeverTakenFromTheLine() {
        var queue = DeadlineQueue()
        queue.schedule(ae("moved"), at: t0)
        queue.schedule(ae("gone"), at: t0 + .milliseconds(1))
        queue.setAsideEarliest()
        queue.setAsideEarliest()
        #expect(queue.peek() == nil)

        queue.schedule(ae("moved"), at: t0 + .seconds(60))
        queue.remove(ae("gone"))
        #expect(queue.firstSetAside(of: "ae") == nil, "both entries in the line are stale")
        #expect(queue.count == 1)
        #expect(queue.popDue(notAfter: t0 + .seconds(60))?.key == ae("moved"))
        #expect(queue.count == 0)
    }

    @Test func anAccountSetAsideLaterWithAnEarlierDeadlineGoesFirstInItsAppsLine() {
        var queue = DeadlineQueue()
        queue.schedule(ae("later"), at: t0 + .seconds(2))
        queue.schedule(ae("latest"), at: t0 + .seconds(3))
        queue.setAsideEarliest()
        queue.setAsideEarliest()
        // A retry due sooner than both, set aside after them.
        queue.schedule(ae("retry"), at: t0 + .seconds(1))
        queue.setAsideEarliest()
        #expect(queue.popSetAside(of: "ae")?.key == ae("retry"))
        #expect(queue.popSetAside(of: "ae")?.key == ae("later"))
        #expect(queue.popSetAside(of: "ae")?.key == ae("latest"))
    }

    @Test func aClockStepPutsSetAsideAccountsBackOnTheHeapShifted() {
        var queue = DeadlineQueue()
        queue.schedule(ae("a"), at: t0)
        queue.setAsideEarliest()
        queue.shiftAll(by: .seconds(3600))
        #expect(queue.firstSetAside(of: "ae") == nil)
        #expect(queue.peek()?.key == ae("a"))
        #expect(queue.peek()?.due == t0 + .seconds(3600))
    }

    @Test func eachAppsLeadCountsOnlyItsOwnAccountsAtItsOwnRate() {
        var queue = DeadlineQueue()
        for index in 0..<50 { queue.schedule(ae("a\(index)"), at: t0) }
        for index in 0..<50 { queue.schedule(lazada("b\(index)"), at: t0) }
        let rates: [AppName: Double] = ["ae": 10, "lazada": 100]
        let leads = queue.requiredLeads { rates[$0] }
        #expect(leads == ["ae": .milliseconds(4900), "lazada": .milliseconds(490)])
        #expect(queue.requiredLeads { _ in nil }.isEmpty, "no rate, no lead")
    }
}

@Suite struct AppLaneTests {
    let now = Timestamp(millisecondsSince1970: 1_000_000)

    @Test func aPauseHoldsTheLaneUntilItEnds() {
        var lane = AppLane(app: "ae", budgets: CallBudgets(), callsPerSecond: nil, massRejection: MassRejectionPolicy())
        let started = lane.pause(until: now + .seconds(30), now: now)
        let shorter = lane.pause(until: now + .seconds(10), now: now)
        let during = lane.nextCallAt(now)
        let endedEarly = lane.endPause(at: now + .seconds(29))
        let ended = lane.endPause(at: now + .seconds(30))
        let after = lane.nextCallAt(now + .seconds(30))
        #expect(started && !shorter, "a shorter pause changes nothing")
        #expect(during == now + .seconds(30))
        #expect(!endedEarly && ended)
        #expect(after == now + .seconds(30))
    }

    @Test func aRejectedConfigurationLetsOneProbeThroughPerInterval() {
        var lane = AppLane(app: "ae", budgets: CallBudgets(), callsPerSecond: nil, massRejection: MassRejectionPolicy())
        lane.configurationFailure = .badSignature
        lane.nextProbeAt = now + .seconds(60)
        let beforeTheProbe = lane.nextCallAt(now)
        lane.probeInFlight = true
        let whileProbing = lane.nextCallAt(now + .seconds(60))
        lane.gatewayMissing = true
        lane.probeInFlight = false
        let withoutAGateway = lane.nextCallAt(now + .seconds(60))
        #expect(beforeTheProbe == now + .seconds(60))
        #expect(whileProbing == nil, "one probe at a time")
        #expect(withoutAGateway == nil, "nothing to probe with")
    }

    @Test func theCallBudgetSpacesTheLanesCalls() {
        var lane = AppLane(app: "ae", budgets: CallBudgets(), callsPerSecond: 4, massRejection: MassRejectionPolicy())
        let first = lane.nextCallAt(now)
        lane.takeCall(now)
        let second = lane.nextCallAt(now)
        lane.setCallsPerSecond(nil)
        let unlimited = lane.nextCallAt(now)
        #expect(first == now)
        #expect(second == now + .milliseconds(250))
        #expect(unlimited == now)
    }
}

/// The call budget an app's refreshes share with the signing proxy (issue 18).
@Suite struct CallBudgetTests {
    @Test func proxiedCallsTakeAtMostTheirShareAndLeaveTheRestToRefreshes() {
        let budgets = CallBudgets(proxyShare: 0.75)
        var lane = AppLane(app: "ae", budgets: budgets, callsPerSecond: 4, massRejection: MassRejectionPolicy())
        let start = Timestamp(millisecondsSince1970: 1_000_000)
        // A proxy flooding every millisecond for ten seconds, the scheduler
        // taking a call whenever its lane says it may.
        var proxied = 0
        var refreshes = 0
        for millisecond in stride(from: 0, to: 10_000, by: 1) {
            let now = start + .milliseconds(Int64(millisecond))
            if case .granted = budgets.tryTakeProxied("ae", rate: 4, now: now) { proxied += 1 }
            if let at = lane.nextCallAt(now), at <= now {
                lane.takeCall(now)
                refreshes += 1
            }
        }
        // 4 a second in all; the proxy at most 3 of them.
        #expect(proxied + refreshes <= 41, "\(proxied) + \(refreshes)")
        #expect(proxied <= 31, "\(proxied)")
        #expect(refreshes >= 9, "refreshes keep their quarter: \(refreshes)")
    }

    @Test func anAppWithoutARateGrantsEveryProxiedCall() {
        let budgets = CallBudgets()
        _ = AppLane(app: "ae", budgets: budgets, callsPerSecond: nil, massRejection: MassRejectionPolicy())
        let now = Timestamp(millisecondsSince1970: 0)
        #expect((0..<100).allSatisfy { _ in budgets.tryTakeProxied("ae", rate: nil, now: now) == .granted })
    }

    @Test func theProxyMakesTheBudgetWhenTheSchedulerHasNotYet() {
        let budgets = CallBudgets(proxyShare: 0.5)
        let now = Timestamp(millisecondsSince1970: 0)
        let granted = (0..<100).filter { _ in budgets.tryTakeProxied("ae", rate: 2, now: now) == .granted }.count
        #expect(granted == 1, "one call now at 2 a second, not every call: \(granted)")
        // The scheduler's lane then shares the same budget.
        var lane = AppLane(app: "ae", budgets: budgets, callsPerSecond: 2, massRejection: MassRejectionPolicy())
        #expect(lane.nextCallAt(now).map { $0 > now } == true, "the proxy's call is spent from the lane's budget")
    }

    @Test func aThrottlingPauseHoldsProxiedCallsUntilItsEnd() {
        let budgets = CallBudgets()
        let now = Timestamp(millisecondsSince1970: 10_000)
        #expect(budgets.proxiedPause("ae", now: now) == nil)
        budgets.pauseProxied("ae", until: now + .seconds(3))
        budgets.pauseProxied("ae", until: now + .seconds(1))
        #expect(budgets.proxiedPause("ae", now: now) == now + .seconds(3), "the later end wins")
        #expect(budgets.proxiedPause("lazada", now: now) == nil, "another app's calls go on")
        #expect(budgets.proxiedPause("ae", now: now + .seconds(3)) == nil)
    }
}
