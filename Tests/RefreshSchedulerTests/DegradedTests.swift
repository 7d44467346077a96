import Logging
import SchedulerTesting
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

@Suite(.timeLimit(.minutes(1)))
struct DegradedTests {
    /// 5,000 sellers due in 8 minutes need 10.4 calls a second: more than
    /// the 10 allowed. Told at start (a warning, a degraded reason that holds
    /// nothing back), and over once the rate is raised.
    @Test func sellersNeedingMoreCallsThanTheRateAllowsAreToldAtStart() async throws {
        let harness = SchedulerHarness(concurrency: 4, maxCallsPerSecond: 10)
        for index in 0..<5_000 { await harness.addAccount("s\(index)", due: .seconds(480)) }
        let run = try await harness.start()
        await harness.settle()

        let told = try #require(harness.events.degraded.first)
        guard case .callRate(let app, let needed, let allowed) = told else {
            Issue.record("expected a call rate reason, got \(told)")
            return
        }
        #expect(app == .default)
        #expect(allowed == 10)
        #expect(abs(needed - 5_000 / 480) < 0.01)
        #expect(harness.events.degraded.count == 1)
        #expect(await harness.scheduler.snapshot().degraded.count == 1)
        let warnings = harness.logs.lines(atLeast: .warning).filter { $0.message.contains("max_calls_per_second") }
        #expect(warnings.count == 1)
        #expect(warnings.first?.metadata["needed_calls_per_second"] == "10.5")
        // The lead starts the earliest at once: nothing is held back for it.
        #expect(await harness.gateway.calls.count > 0)
        // Refreshed meanwhile, each is planned at the latest the policy
        // allows, a tenth of its hour left (the policy's own: 45 to 48 min).
        /// How far ahead each refresh from event number `first` on planned the next.
        func plannedAhead(from first: Int = 0) -> [Duration] {
            harness.events.all.dropFirst(first).compactMap { entry in
                guard case .refreshed(_, _, let nextDue, _) = entry.event else { return nil }
                return nextDue - entry.at
            }
        }
        let refreshed = plannedAhead()
        #expect(!refreshed.isEmpty)
        #expect(refreshed.allSatisfy { $0 == .seconds(3240) }, "\(refreshed.prefix(3))")

        var raised = harness.configuration
        raised.maxCallsPerSecond = 40
        await harness.scheduler.update(configuration: raised)
        await harness.settle()
        #expect(harness.events.recovered.count == 1)
        #expect(await harness.scheduler.snapshot().degraded.isEmpty)
        // Over: the policy's times again, once the lead at 40 calls a second
        // (the rest in 125 s, due at 480 s) starts them.
        let before = harness.events.all.count
        await harness.advance(by: .seconds(400))
        let later = plannedAhead(from: before)
        #expect(!later.isEmpty)
        #expect(
            later.allSatisfy { $0 >= .seconds(2700) && $0 <= .seconds(2880) },
            "\(later.filter { $0 < .seconds(2700) || $0 > .seconds(2880) }.prefix(3)) of \(later.count)")
        #expect(harness.events.degraded.count == 1, "not told again")
        run.cancel()
        try await run.value
    }

    /// 100 sellers due together in 8 s need 10 s of calls at 10 a second:
    /// the lead starts the first at once, and those the rate still cannot
    /// start by 8 s are planned at the time it can (their tokens expire at
    /// 20 s: up to 14 s is allowed). Every start is on plan and in order;
    /// planned by the policy alone, the last 19 would start up to 1.9 s late.
    @Test func sellersTheRateCannotStartOnTimeArePlannedWhenItCan() async throws {
        let harness = SchedulerHarness(concurrency: 4, maxCallsPerSecond: 10)
        let keys = (0..<100).map { AccountKey(app: .default, sellerID: "s\(1000 + $0)") }
        for key in keys {
            await harness.addAccount(key, due: .seconds(8), expiresIn: .seconds(20), lifetime: .seconds(25))
        }
        let run = try await harness.start()
        await harness.advance(by: .seconds(12))
        let starts = harness.events.all.compactMap { entry -> (AccountKey, Duration)? in
            guard case .started(let account, let delay) = entry.event else { return nil }
            return (account, delay)
        }
        #expect(starts.count == 100)
        let late = starts.filter { $0.1 > .milliseconds(50) }
        #expect(late.isEmpty, "\(late.count) late, the latest by \(late.map(\.1).max() ?? .zero)")
        #expect(starts.map(\.0) == keys)
        #expect(harness.logs.lines(atLeast: .notice).contains { $0.message.contains("planned when it can") })
        #expect(harness.events.refreshes.count == 100)
        run.cancel()
        try await run.value
    }

    @Test func configurationFailureDegradesOnceAndProbesOneAccountPerMinute() async throws {
        let harness = SchedulerHarness(concurrency: 4)
        for index in 0..<10 { await harness.addAccount("s\(index)") }
        await harness.gateway.setDefault(.fail(.badSignature))
        let run = try await harness.start()
        let start = harness.now
        await harness.settle()

        // The first batch was already under way; then everything holds.
        #expect(await harness.gateway.calls.count == 4)
        #expect(harness.events.degraded == [.configuration(app: .default, .badSignature)])
        let errors = harness.logs.lines(atLeast: .error)
        #expect(errors.count == 1, "one clear error, not one per seller: \(errors.map(\.message))")
        #expect(await harness.scheduler.snapshot().degraded == [.configuration(app: .default, .badSignature)])

        await harness.advance(by: .seconds(600))

        let calls = await harness.gateway.calls
        #expect(calls.count == 14)
        let probeTimes = calls.dropFirst(4).map { ($0.at - start).wholeMilliseconds }
        #expect(probeTimes == (1...10).map { Int64($0) * 60_000 })
        #expect(await harness.gateway.maxInFlight <= 4)
        #expect(harness.events.degraded.count == 1)
        #expect(harness.logs.lines(atLeast: .error).count == 1)
        for index in 0..<10 {
            let account = try #require(await harness.store.account("s\(index)"))
            #expect(account.status == .active)
            #expect(account.failedAttempts == 0)
        }

        // Fixed: the next probe succeeds and everyone is refreshed at once.
        await harness.gateway.setDefault(.succeed)
        await harness.advance(by: .seconds(60))
        #expect(harness.events.recovered == [.configuration(app: .default, .badSignature)])
        #expect(await harness.scheduler.snapshot().refreshed == 10)
        #expect(await harness.scheduler.snapshot().degraded.isEmpty)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func retryHeldBackProbesAtOnceAfterTheConfigurationIsFixed() async throws {
        let harness = SchedulerHarness(concurrency: 1)
        for index in 0..<5 { await harness.addAccount("s\(index)") }
        await harness.gateway.setDefault(.fail(.badSignature))
        let run = try await harness.start()
        await harness.settle()
        #expect(await harness.gateway.calls.count == 1)

        // SIGHUP after the secret file was corrected.
        await harness.gateway.setDefault(.succeed)
        await harness.scheduler.retryHeldBack()
        await harness.settle()

        #expect(harness.events.recovered.count == 1)
        #expect(await harness.scheduler.snapshot().refreshed == 5)
        run.cancel()
        try await run.value
    }

    @Test func transientFailureOfAProbeKeepsTheSchedulerDegraded() async throws {
        let harness = SchedulerHarness(concurrency: 1)
        for index in 0..<3 { await harness.addAccount("s\(index)") }
        await harness.gateway.setDefault(.fail(.badSignature))
        let run = try await harness.start()
        await harness.settle()

        await harness.gateway.setDefault(.fail(.serviceUnavailable))
        await harness.advance(by: .seconds(60))
        #expect(harness.events.recovered.isEmpty)
        #expect(await harness.gateway.calls.count == 2)

        await harness.gateway.setDefault(.succeed)
        await harness.advance(by: .seconds(60))
        #expect(harness.events.recovered.count == 1)
        run.cancel()
        try await run.value
    }

    @Test func failedCommitKeepsThePairAndSendsNoTokenBeforeItIsDurable() async throws {
        let harness = SchedulerHarness()
        let start = harness.now
        await harness.addAccount("first", due: .zero)
        await harness.addAccount("second", due: .seconds(1))
        await harness.store.fail(.commitRotation, times: 3)
        let run = try await harness.start()
        await harness.settle()

        #expect(harness.events.degraded.count == 1)
        if case .storage = harness.events.degraded.first {} else { Issue.record("expected a storage degradation") }
        let critical = harness.logs.lines(atLeast: .critical)
        #expect(critical.count == 1)
        #expect(critical.first?.metadata["seller"] == "first")

        // Retries after 1, 2 and 4 seconds; nothing else is called meanwhile.
        await harness.advance(to: start + .milliseconds(6_999))
        #expect(await harness.gateway.calls.map(\.sellerID) == ["first"])
        #expect(await harness.store.account("first")?.refreshToken == Secret("rt-first-initial"))

        await harness.advance(to: start + .seconds(7))
        let first = try #require(await harness.store.account("first"))
        #expect(first.refreshToken != Secret("rt-first-initial"))
        #expect(harness.events.recovered.count == 1)
        #expect(await harness.gateway.calls.map(\.sellerID) == ["first", "second"])

        // Its next refresh sends the stored (new) token; the gateway checks.
        await harness.advance(by: .seconds(3600))
        #expect(await harness.gateway.calls(for: "first") >= 2)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func noSecretAppearsInAnyLogLine() async throws {
        let harness = SchedulerHarness()
        for seller: AccountKey in ["ok", "dead", "flaky", "limited", "bad"] { await harness.addAccount(seller) }
        await harness.gateway.script("dead", .fail(.illegalRefreshToken))
        await harness.gateway.script("flaky", .fail(.serviceUnavailable))
        await harness.gateway.script("limited", .fail(.throttled(seconds: 5)))
        await harness.gateway.script("bad", .fail(.badSignature))
        await harness.store.fail(.commitRotation, times: 1)
        let run = try await harness.start()
        await harness.advance(by: .seconds(7200))
        run.cancel()
        try await run.value

        let lines = harness.logs.all
        #expect(lines.count > 5)
        let sellers = ["ok", "dead", "flaky", "limited", "bad"]
        for line in lines {
            for seller in sellers {
                // Tokens are `rt-<seller>-…` and `at-<seller>-…`.
                #expect(!line.rendered.contains("rt-\(seller)-"), "\(line.rendered)")
                #expect(!line.rendered.contains("at-\(seller)-"), "\(line.rendered)")
            }
        }
    }

    @Test func largeClockDifferenceWithTheGatewayIsReportedOnce() async throws {
        let harness = SchedulerHarness()
        for index in 0..<3 { await harness.addAccount("s\(index)") }
        await harness.gateway.setGatewayClockOffset(.seconds(-300))
        let run = try await harness.start()
        await harness.settle()

        let warnings = harness.logs.all.filter { $0.message.contains("clock") && $0.level == .warning }
        #expect(warnings.count == 1)
        #expect(await harness.scheduler.snapshot().refreshed == 3)
        run.cancel()
        try await run.value
    }
}
