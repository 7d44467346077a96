import Logging
import SchedulerTesting
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

/// Odd answers, a store that refuses one seller, clock steps, mass
/// rejections, lost answers and stops: none may lose a seller or hold the fleet.
@Suite struct HardeningTests {
    @Test func finalGrantWithoutARefreshTokenHoldsBackNoOtherSeller() async throws {
        let harness = SchedulerHarness()
        for id: AccountKey in ["a", "b", "c", "last"] { await harness.addAccount(id, due: .seconds(60)) }
        await harness.gateway.script("last", .succeedFinal)
        let run = try await harness.start()
        await harness.advance(by: .seconds(60))

        let last = try #require(await harness.store.account("last"))
        #expect(last.isRefreshable == false)
        #expect(last.status == .active)
        // The old refresh token stays stored (never sent again); the new access token is kept.
        #expect(last.refreshToken == Secret("rt-last-initial"))
        #expect(last.accessToken != Secret("at-last-initial"))
        for id: AccountKey in ["a", "b", "c"] { #expect(harness.events.refreshed(id).count == 1) }
        #expect(harness.events.degraded.isEmpty)

        // The others go on being refreshed on schedule; "last" never again.
        await harness.advance(by: .seconds(3000))
        for id: AccountKey in ["a", "b", "c"] { #expect(harness.events.refreshed(id).count == 2) }
        #expect(await harness.gateway.calls(for: "last") == 1)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func storeRefusingOneSellersPairHoldsBackOnlyThatSeller() async throws {
        let harness = SchedulerHarness()
        for id: AccountKey in ["a", "b", "odd"] { await harness.addAccount(id, due: .zero) }
        await harness.store.refuseValues(of: "odd", times: 3)
        let run = try await harness.start()
        await harness.settle()
        await harness.addAccount("later", due: .seconds(6))
        await harness.advance(by: .seconds(6))

        #expect(harness.events.refreshed("later").count == 1, "a new seller is refreshed while odd's write is retried")
        #expect(harness.events.degraded.isEmpty)
        #expect(
            harness.logs.all.contains { $0.metadata["outcome"] == "commit_refused" && $0.metadata["seller"] == "odd" })
        await harness.advance(by: .seconds(30))
        #expect(harness.events.refreshed("odd").count == 1, "the refused pair is stored once the store takes it")
        #expect(await harness.gateway.calls(for: "odd") == 1, "its refresh token was never sent twice")
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func zeroLifetimeAnswersAreRefreshedAfterTheMinimumIntervalNotAtOnce() async throws {
        let harness = SchedulerHarness(policy: RefreshPolicy(minimumInterval: .seconds(60)))
        await harness.addAccount("zero", due: .zero)
        await harness.gateway.setDefault(
            .succeedOddly { grant in
                grant.accessTokenLifetime = .zero
                grant.expireTime = grant.receivedAt
            })
        let run = try await harness.start()
        await harness.advance(by: .seconds(15))
        #expect(await harness.gateway.calls(for: "zero") == 1)
        await harness.advance(by: .seconds(45))
        #expect(await harness.gateway.calls(for: "zero") == 2)
        await harness.advance(by: .seconds(600))
        #expect(await harness.gateway.calls(for: "zero") == 12)
        let warnings = harness.logs.all.filter { $0.level == .warning && $0.message.contains("gateway anomaly") }
        #expect(warnings.count == 1, "the anomaly is logged once per seller, not once per answer")
        run.cancel()
        try await run.value
    }

    @Test func oddAnswersAreStoredWithWhatTheyLeaveOutKept() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("kept", due: .zero)
        await harness.addAccount("nameless", due: .zero)
        // Not rotated: no refresh token in the answer.
        await harness.gateway.script("kept", .succeedOddly { $0.refreshToken = nil })
        // The security answer's shape: no seller fields.
        await harness.gateway.script(
            "nameless",
            .succeedOddly { grant in
                grant.sellerID = ""
                grant.profile = SellerProfile()
            })
        let run = try await harness.start()
        await harness.settle()

        let kept = try #require(await harness.store.account("kept"))
        #expect(kept.refreshToken == Secret("rt-kept-initial"))
        #expect(kept.isRefreshable)
        let nameless = try #require(await harness.store.account("nameless"))
        #expect(nameless.refreshToken != Secret("rt-nameless-initial"))
        #expect(harness.events.refreshed("nameless").count == 1)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func refreshTokenPastItsValidityByOurClockIsSentOnceAndTheGatewayDecides() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("clock", due: .seconds(10))
        await harness.store.modify("clock") { $0.refreshTokenValidTime = harness.now - .seconds(1) }
        let run = try await harness.start()
        await harness.advance(by: .seconds(10))

        #expect(await harness.gateway.calls(for: "clock") == 1)
        #expect(await harness.store.account("clock")?.status == .active)
        #expect(harness.events.reauthRequired.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func clockSteppedADayAheadAndBackChangesNoSellersFate() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("soon", due: .seconds(600))
        await harness.addAccount("valid", due: .seconds(1200))
        await harness.store.modify("valid") { $0.refreshTokenValidTime = harness.now + .seconds(12 * 3600) }
        let run = try await harness.start()
        await harness.advance(by: .seconds(60))

        harness.clock.step(by: .seconds(86_400))
        await harness.timer.fire()
        await harness.settle()
        #expect(await harness.gateway.calls.isEmpty, "a step is not time passing: nothing fell due")
        #expect(harness.events.reauthRequired.isEmpty)
        #expect(await harness.store.shifts == [.seconds(86_400)])

        harness.clock.step(by: .seconds(-86_400))
        await harness.timer.fire()
        await harness.settle()
        // Still due 540 s after the start of the story, by the monotonic clock.
        await harness.advance(by: .seconds(539))
        #expect(await harness.gateway.calls(for: "soon") == 0)
        await harness.advance(by: .seconds(1))
        #expect(await harness.gateway.calls(for: "soon") == 1)
        await harness.advance(by: .seconds(600))
        #expect(await harness.gateway.calls(for: "valid") == 1)
        #expect(harness.events.reauthRequired.isEmpty)
        #expect(await harness.store.account("valid")?.status == .active)
        run.cancel()
        try await run.value
    }

    @Test func clockSetBackThreeHoursDoesNotMakeARefreshLate() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s", due: .seconds(600))
        let run = try await harness.start()
        harness.clock.step(by: .seconds(-3 * 3600))
        await harness.timer.fire()
        await harness.settle()
        await harness.advance(by: .seconds(600))
        #expect(await harness.gateway.calls(for: "s") == 1)
        run.cancel()
        try await run.value
    }

    @Test func massRejectionMarksAtMostTheThresholdAndAGlitchReleasesTheRest() async throws {
        let policy = MassRejectionPolicy(sellers: 3, fraction: 0.2, window: .seconds(600), hold: .seconds(6 * 3600))
        let harness = SchedulerHarness(concurrency: 4, probeInterval: .seconds(60), massRejection: policy)
        let ids: [AccountKey] = (1...12).map { "m\($0)" }
        for id in ids { await harness.addAccount(id, due: .zero) }
        await harness.gateway.setDefault(.glitch(.illegalRefreshToken))
        let run = try await harness.start()
        await harness.advance(by: .seconds(1))

        #expect(harness.events.reauthRequired.count == 3)
        #expect(harness.events.degraded.contains { if case .massRejection = $0 { true } else { false } })
        await harness.advance(by: .seconds(180))
        #expect(harness.events.reauthRequired.count == 3, "nobody else is marked while the rejections go on")
        let callsDuringHold = await harness.gateway.calls.count
        #expect(callsDuringHold <= 12 + 3, "one probe per interval, not every held seller")

        await harness.gateway.setDefault(.succeed)
        await harness.advance(by: .seconds(61))
        let active = await ids.asyncFilter { await harness.store.account($0)?.status == .active }
        #expect(active.count == 9)
        for id in active { #expect(harness.events.refreshed(id).count == 1, "\(id) is refreshed once the glitch ends") }
        #expect(harness.events.recovered.contains { if case .massRejection = $0 { true } else { false } })
        run.cancel()
        try await run.value
    }

    @Test func aSingleRevokedSellerIsStillMarkedAtOnce() async throws {
        let harness = SchedulerHarness()
        for id: AccountKey in ["a", "b", "c"] { await harness.addAccount(id, due: .zero) }
        await harness.gateway.script("b", .fail(.illegalRefreshToken))
        let run = try await harness.start()
        await harness.settle()
        #expect(harness.events.reauthRequired.map(\.account) == ["b"])
        run.cancel()
        try await run.value
    }

    @Test func rejectionAfterALostAnswerIsMarkedRotationLost() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("lost", due: .zero)
        let timeout = GatewayFailure(
            .transient, code: "Timeout", message: "the gateway did not answer in time", answerMayBeLost: true)
        await harness.gateway.script("lost", .glitch(timeout), .fail(.illegalRefreshToken))
        let run = try await harness.start()
        await harness.advance(by: .seconds(600))

        let account = try #require(await harness.store.account("lost"))
        #expect(account.status == .reauthRequired)
        #expect(account.statusReason == StatusReason.rotationLost)
        run.cancel()
        try await run.value
    }

    @Test func pairThatCannotBeStoredKeepsItsLeaseAndIsHandedOverAtAStop() async throws {
        let harness = SchedulerHarness(shutdownGracePeriod: .seconds(40))
        await harness.addAccount("stuck", due: .zero)
        await harness.store.fail(.commitRotation)
        let run = try await harness.start()
        await harness.advance(by: .seconds(200))

        // Past the lease's 90 s: renewed while the pair lives only in memory.
        let lease = try #require(await harness.store.account("stuck")?.lease)
        #expect(lease.owner == SchedulerHarness.owner)
        #expect(lease.expiresAt > harness.now)
        #expect(await harness.scheduler.snapshot().degraded.contains(.storage(message: "disk I/O error (SQLITE_FULL)")))

        await harness.scheduler.stop()
        try await waitUntil("the scheduler is stopping") { await harness.scheduler.snapshot().isStopping }
        await harness.advanceWithoutWaiting(by: .seconds(40))
        try await run.value
        let handedOver = harness.events.events.compactMap { event -> TokenGrant? in
            if case .rotationUnstored("stuck", let grant, _) = event { grant } else { nil }
        }
        #expect(handedOver.count == 1)
        #expect(handedOver.first?.refreshToken != nil)
        #expect(await harness.store.count(.commitRotation) >= 2, "a final attempt was made at the stop")
    }

    @Test func reloadWithALongerTimeoutLengthensTheLeaseAtOnce() async throws {
        let harness = SchedulerHarness()
        var longer = harness.configuration
        longer.leaseDuration = .seconds(400)
        await harness.scheduler.update(configuration: longer)
        await harness.addAccount("s", due: .zero)
        await harness.gateway.script("s", .hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("the call is in flight") { await harness.gateway.heldCount == 1 }
        let lease = try #require(await harness.store.account("s")?.lease)
        #expect(lease.expiresAt == harness.now + .seconds(400))
        await harness.gateway.release("s")
        await harness.settle()
        run.cancel()
        try await run.value
    }
}

extension Sequence {
    func asyncFilter(_ include: (Element) async -> Bool) async -> [Element] {
        var kept: [Element] = []
        for element in self where await include(element) { kept.append(element) }
        return kept
    }
}

@Suite struct MassRejectionAndOneShotTests {
    @Test func outageAfterManySuccessesStillMarksAtMostTheThreshold() async throws {
        let policy = MassRejectionPolicy(sellers: 3, fraction: 0.2, window: .seconds(600), hold: .seconds(6 * 3600))
        let harness = SchedulerHarness(concurrency: 1, massRejection: policy)
        let ids: [AccountKey] = (1...40).map { "o\($0)" }
        // 30 successes fill the window, then the gateway rejects everything.
        for id in ids.prefix(30) { await harness.addAccount(id, due: .zero) }
        for id in ids.suffix(10) {
            await harness.addAccount(id, due: .seconds(1))
            await harness.gateway.script(id, .glitch(.illegalRefreshToken))
        }
        let run = try await harness.start()
        await harness.advance(by: .seconds(5))
        #expect(harness.events.reauthRequired.count == 3, "\(harness.events.reauthRequired.map(\.account))")
        run.cancel()
        try await run.value
    }

    @Test func removedProbeHandsTheProbeToAnotherHeldSeller() async throws {
        let policy = MassRejectionPolicy(sellers: 1, fraction: 0.2, window: .seconds(600), hold: .seconds(6 * 3600))
        let harness = SchedulerHarness(concurrency: 1, probeInterval: .seconds(60), massRejection: policy)
        for id: AccountKey in ["a", "b", "c", "d"] { await harness.addAccount(id, due: .zero) }
        await harness.gateway.setDefault(.glitch(.illegalRefreshToken))
        let run = try await harness.start()
        await harness.advance(by: .seconds(1))
        #expect(harness.events.reauthRequired.count == 1)
        let probe = try #require(await harness.scheduler.lanes[.default]?.breakerProbe)
        await harness.store.delete(probe)
        await harness.gateway.setDefault(.succeed)
        await harness.advance(by: .seconds(130))
        let sellers: [AccountKey] = ["a", "b", "c", "d"]
        let stillActive = await sellers.asyncFilter { await harness.store.account($0)?.status == .active }
        #expect(stillActive.count == 2)
        for id in stillActive { #expect(harness.events.refreshed(id).count == 1, "\(id) released after another probe") }
        run.cancel()
        try await run.value
    }

    @Test func oneShotStopGivesAParkedPairAFinalAttemptAndHandsItOver() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("cli", due: .zero)
        await harness.store.fail(.commitRotation)
        let scheduler = harness.scheduler
        let outcomes = Task { await scheduler.refreshNow(["cli"]) }
        try await waitUntil("the pair is parked") { await harness.store.count(.commitRotation) >= 1 }
        try await waitUntil("the retry waits on the timer") { harness.timer.deadline != nil }
        await scheduler.stop()
        let result = await outcomes.value
        guard case .storeFailed = result["cli"] else {
            Issue.record("expected storeFailed, got \(String(describing: result["cli"]))")
            return
        }
        #expect(await harness.store.count(.commitRotation) >= 2, "a final attempt was made")
        #expect(harness.events.events.contains { if case .rotationUnstored("cli", _, _) = $0 { true } else { false } })
    }
}

@Suite struct ContentionTests {
    /// Two refreshers (a daemon and a CLI, say) on one store: while the first
    /// holds a call for a seller, the second is told the lease is busy and
    /// sends nothing.
    @Test func secondRefresherWaitsForTheLeaseWhileTheFirstCallIsInFlight() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s", due: .zero)
        await harness.gateway.script("s", .hold)
        let other = RefreshScheduler(
            store: harness.store, gateway: harness.gateway, clock: harness.clock,
            configuration: RefreshSchedulerConfiguration(leaseOwner: "cli-other"), timer: ManualWakeupTimer())
        let first = Task { await harness.scheduler.refreshNow(["s"]) }
        try await waitUntil("the first call is in flight") { await harness.gateway.heldCount == 1 }

        let second = await other.refreshNow(["s"])
        guard case .busy = second["s"] else {
            Issue.record("expected busy, got \(String(describing: second["s"]))")
            return
        }
        await harness.gateway.release("s")
        let firstOutcome = await first.value
        guard case .refreshed = firstOutcome["s"] else {
            Issue.record("expected refreshed, got \(String(describing: firstOutcome["s"]))")
            return
        }
        #expect(await harness.gateway.calls(for: "s") == 1)
        #expect(await harness.gateway.violations.isEmpty)
    }

    @Test func theFakeGatewayCatchesTwoCallsOfOneSellerInFlight() async throws {
        // The check above relies on this: without leases, both calls would go out.
        let clock = ManualWallClock()
        let store = FakeAccountStore()
        let gateway = FakeTokenGateway(clock: clock) { [store] _, token in await store.isCurrentRefreshToken(token) }
        await store.put(Account(sellerID: "s", refreshToken: Secret("rt"), updatedAt: clock.now()))
        await gateway.register("s", refreshToken: Secret("rt"))
        await gateway.script("s", .hold, .hold)
        let one = Task { try? await gateway.refresh(refreshToken: Secret("rt")) }
        let two = Task { try? await gateway.refresh(refreshToken: Secret("rt")) }
        try await waitUntil("both calls are held") { await gateway.heldCount == 2 }
        #expect(await gateway.violations.contains { $0.contains("two refreshes in flight") })
        await gateway.release("s", with: .glitch(.serviceUnavailable))
        await gateway.release("s", with: .glitch(.serviceUnavailable))
        _ = await (one.value, two.value)
    }
}

@Suite struct BreakerArithmeticTests {
    @Test func slowFleetTripsOnRejectionsInARow() {
        var breaker = MassRejectionBreaker(
            policy: MassRejectionPolicy(sellers: 3, fraction: 0.2, window: .seconds(600)))
        var now = ManualWallClock.start
        // One rejection every 20 minutes: the window never holds more than one.
        for _ in 0..<3 {
            breaker.record(rejected: true, at: now)
            now = now + .seconds(1200)
        }
        #expect(!breaker.isTripped)
        breaker.record(rejected: true, at: now)
        #expect(breaker.isTripped)
    }

    @Test func aSuccessBetweenRejectionsKeepsTheBreakerClosedUnlessTheFractionIsHigh() {
        var breaker = MassRejectionBreaker(
            policy: MassRejectionPolicy(sellers: 3, fraction: 0.5, window: .seconds(600)))
        let now = ManualWallClock.start
        for _ in 0..<4 {
            breaker.record(rejected: true, at: now)
            breaker.record(rejected: false, at: now)
            breaker.record(rejected: false, at: now)
        }
        #expect(!breaker.isTripped, "4 of 12 rejected, never more than one in a row")
    }

    @Test func theHoldEndsAndTheBreakerReArmsAfterASuccess() {
        var breaker = MassRejectionBreaker(
            policy: MassRejectionPolicy(sellers: 1, fraction: 0.2, window: .seconds(600), hold: .seconds(3600)))
        let start = ManualWallClock.start
        breaker.record(rejected: true, at: start)
        breaker.record(rejected: true, at: start)
        #expect(breaker.holds(at: start + .seconds(3599)))
        #expect(!breaker.holds(at: start + .seconds(3600)))
        breaker.record(rejected: false, at: start + .seconds(3700))
        #expect(!breaker.isTripped)
        breaker.record(rejected: true, at: start + .seconds(3701))
        breaker.record(rejected: true, at: start + .seconds(3702))
        #expect(breaker.holds(at: start + .seconds(3702)))
    }
}
