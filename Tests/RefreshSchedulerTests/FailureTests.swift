import Logging
import SchedulerTesting
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

@Suite(.timeLimit(.minutes(1)))
struct FailureTests {
    @Test func gatewayOutageOfTwoDaysNeverMarksAnAccount() async throws {
        let harness = SchedulerHarness(tickInterval: .seconds(60))
        let start = harness.now
        for index in 0..<3 {
            await harness.addAccount("s\(index)", due: .seconds(Int64(index)), expiresIn: .seconds(3600))
        }
        await harness.gateway.setDefault(.fail(.serviceUnavailable))
        let run = try await harness.start()

        await harness.advance(by: .seconds(48 * 3600))

        #expect(harness.events.reauthRequired.isEmpty)
        for index in 0..<3 {
            let account = try #require(await harness.store.account("s\(index)"))
            #expect(account.status == .active)
            #expect(account.refreshToken == Secret("rt-s\(index)-initial"))
            #expect(account.failedAttempts > 100)
        }
        let expiry = start + .seconds(3600)
        let failures = harness.events.failures
        #expect(failures.count > 300)
        for failure in failures {
            let delay = failure.nextDue - failure.at
            #expect(delay <= .seconds(300))
            if failure.at < expiry {
                // While the token is valid, a quarter of what is left at most.
                let left = expiry - failure.at
                #expect(delay <= max(left / 4, .seconds(1)))
            }
        }
        // The gateway comes back: everyone is refreshed within the backoff cap.
        await harness.gateway.setDefault(.succeed)
        await harness.advance(by: .seconds(301))
        #expect(await harness.scheduler.snapshot().refreshed == 3)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func retryDelayIsCappedByTheAccessTokensRemainingLife() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s1", due: .zero, expiresIn: .seconds(100), failedAttempts: 10)
        await harness.gateway.script("s1", .fail(.serviceUnavailable))
        let run = try await harness.start()
        await harness.settle()

        let failure = try #require(harness.events.failures.first)
        #expect(failure.nextDue - failure.at <= .seconds(25))
        #expect(await harness.store.account("s1")?.failedAttempts == 11)
        run.cancel()
        try await run.value
    }

    @Test func rejectedRefreshTokenMarksOnlyThatSellerAndItGetsNoMoreCalls() async throws {
        let harness = SchedulerHarness()
        for seller: AccountKey in ["dead", "alive1", "alive2"] { await harness.addAccount(seller) }
        await harness.gateway.script("dead", .fail(.illegalRefreshToken))
        let run = try await harness.start()
        await harness.settle()

        let dead = try #require(await harness.store.account("dead"))
        #expect(dead.status == .reauthRequired)
        #expect(dead.statusReason == "IllegalRefreshToken")
        #expect(dead.lastRequestID == "req-dead")
        #expect(harness.events.reauthRequired.map(\.account) == ["dead"])
        #expect(harness.events.reauthRequired.first?.requestID == "req-dead")
        #expect(await harness.scheduler.deadline(of: "dead") == nil)

        await harness.advance(by: .seconds(10 * 3600))

        #expect(await harness.gateway.calls(for: "dead") == 1)
        #expect(await harness.gateway.calls(for: "alive1") >= 10)
        #expect(await harness.store.account("alive1")?.status == .active)
        #expect(await harness.store.account("alive2")?.status == .active)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }

    @Test func rejectionAfterAnotherProcessReplacedTheTokenIsALostRaceNotAMark() async throws {
        let harness = SchedulerHarness()
        let start = harness.now
        await harness.addAccount("s1")
        await harness.gateway.script("s1", .hold)
        let run = try await harness.start()
        await harness.fireIfDue()
        try await waitUntil("the call is in flight") { await harness.gateway.heldCount == 1 }

        // The seller re-authorizes meanwhile (`add --code` stores a new pair).
        await harness.store.modify("s1") {
            $0.refreshToken = Secret("rt-s1-reauthorized")
            $0.nextRefreshAt = start + .seconds(2880)
        }
        await harness.gateway.register("s1", refreshToken: Secret("rt-s1-reauthorized"))
        await harness.gateway.release("s1", with: .fail(.illegalRefreshToken))
        await harness.settle()

        let account = try #require(await harness.store.account("s1"))
        #expect(account.status == .active)
        #expect(account.refreshToken == Secret("rt-s1-reauthorized"))
        #expect(harness.events.reauthRequired.isEmpty)
        #expect(await harness.scheduler.deadline(of: "s1") == start + .seconds(2880))
        #expect(await harness.gateway.calls(for: "s1") == 1)
        run.cancel()
        try await run.value
    }

    @Test func finalGrantRunsOutIntoReauthRequiredWithoutAnotherCall() async throws {
        let harness = SchedulerHarness()
        let start = harness.now
        await harness.addAccount("last")
        await harness.gateway.script("last", .succeedFinal)
        let run = try await harness.start()
        await harness.settle()

        let stored = try #require(await harness.store.account("last"))
        #expect(stored.isRefreshable == false)
        let expiry = start + .seconds(3600)
        #expect(harness.events.refreshed("last").map(\.isFinalGrant) == [true])
        #expect(await harness.scheduler.deadline(of: "last") == expiry)

        await harness.advance(to: expiry - .milliseconds(1))
        #expect(await harness.store.account("last")?.status == .active)
        await harness.advance(to: expiry)

        let expired = try #require(await harness.store.account("last"))
        #expect(expired.status == .reauthRequired)
        #expect(expired.statusReason == StatusReason.refreshTokenExpired)
        #expect(harness.events.reauthRequired.map(\.reason) == [StatusReason.refreshTokenExpired])
        #expect(await harness.gateway.calls(for: "last") == 1)
        run.cancel()
        try await run.value
    }

    @Test func unknownGatewayCodeIsTransientButLoggedLoudly() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("s1")
        let odd = GatewayFailure(.transient, code: "SomethingNew", message: "?", isUnknownCode: true)
        await harness.gateway.script("s1", .fail(odd))
        let run = try await harness.start()
        await harness.settle()

        #expect(await harness.store.account("s1")?.status == .active)
        #expect(harness.logs.lines(atLeast: .error).contains { $0.metadata["code"] == "SomethingNew" })
        run.cancel()
        try await run.value
    }

    @Test func unavailableStoreIsLoggedOnceAndRetriedWithBackoff() async throws {
        let harness = SchedulerHarness()
        for index in 0..<20 { await harness.addAccount("s\(index)") }
        await harness.store.fail(.acquireLease, times: 20)
        let run = try await harness.start()
        await harness.settle()

        #expect(await harness.gateway.calls.isEmpty)
        #expect(harness.logs.lines(atLeast: .error).count == 1)

        await harness.advance(by: .seconds(60))
        #expect(await harness.scheduler.snapshot().refreshed == 20)
        #expect(harness.logs.all.contains { $0.message == "the store works again" })
        #expect(harness.logs.lines(atLeast: .error).count == 1)
        run.cancel()
        try await run.value
    }

    @Test func failedReauthMarkIsRetriedWithoutCallingTheGatewayAgain() async throws {
        let harness = SchedulerHarness()
        await harness.addAccount("dead")
        await harness.gateway.script("dead", .fail(.illegalRefreshToken))
        await harness.store.fail(.markReauthRequired, times: 2)
        let run = try await harness.start()
        await harness.advance(by: .seconds(10))

        #expect(await harness.store.account("dead")?.status == .reauthRequired)
        #expect(await harness.store.count(.markReauthRequired) == 3)
        #expect(await harness.gateway.calls(for: "dead") == 1)
        #expect(await harness.gateway.violations.isEmpty)
        run.cancel()
        try await run.value
    }
}
