import Dispatch
import SchedulerTesting
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

@Suite(.timeLimit(.minutes(1)))
struct DeadlineQueueTests {
    @Test func rescheduledAccountKeepsOnlyItsLatestDeadline() {
        var queue = DeadlineQueue()
        queue.schedule("a", at: Timestamp(millisecondsSince1970: 100))
        queue.schedule("b", at: Timestamp(millisecondsSince1970: 200))
        queue.schedule("a", at: Timestamp(millisecondsSince1970: 300))

        #expect(queue.count == 2)
        #expect(queue.popDue(notAfter: Timestamp(millisecondsSince1970: 250))?.key == "b")
        #expect(queue.popDue(notAfter: Timestamp(millisecondsSince1970: 250)) == nil)
        #expect(queue.popDue(notAfter: Timestamp(millisecondsSince1970: 300))?.key == "a")
        #expect(queue.count == 0)
    }

    @Test func removedAccountIsNeverPopped() {
        var queue = DeadlineQueue()
        queue.load([
            ScheduledAccount("a", due: Timestamp(millisecondsSince1970: 1)),
            ScheduledAccount("b", due: nil),
            ScheduledAccount("c", due: Timestamp(millisecondsSince1970: 2)),
        ])
        queue.remove("a")
        #expect(queue.count == 1)
        #expect(queue.peek()?.key == "c")
    }

    /// Thousands of accounts of two apps (one seller id in both), added in
    /// a shuffled order with many equal deadlines: each is found by its own
    /// key, and they come off in deadline order, ties by seller id (bytes),
    /// then by app in the order the apps were first seen.
    @Test func accountsOfSeveralAppsAreFoundByTheirKeyAndPoppedInOneStrictOrder() {
        var queue = DeadlineQueue()
        var random = SeededRandom(seed: 19)
        var keys: [AccountKey] = []
        for index in 0..<3000 {
            keys.append(AccountKey(app: "ae", sellerID: "s\(index)"))
            keys.append(AccountKey(app: "lazada", sellerID: "s\(index)"))
        }
        let due = { (key: AccountKey) in Timestamp(millisecondsSince1970: Int64(key.sellerID.utf8.count * 7 % 5)) }
        queue.schedule(keys[0], at: due(keys[0]))  // "ae" is seen first
        for key in keys.shuffled(using: &random) { queue.schedule(key, at: due(key)) }
        queue.remove(AccountKey(app: "lazada", sellerID: "s7"))
        queue.remove(AccountKey(app: "nowhere", sellerID: "s8"))

        #expect(queue.count == 5999)
        #expect(queue.due(of: AccountKey(app: "ae", sellerID: "s7")) == due(keys[14]))
        #expect(!queue.contains(AccountKey(app: "lazada", sellerID: "s7")))
        #expect(!queue.contains(AccountKey(app: "ae", sellerID: "s3000")))
        let expected = keys.filter { $0 != AccountKey(app: "lazada", sellerID: "s7") }.sorted {
            let (left, right) = (due($0), due($1))
            if left != right { return left < right }
            if $0.sellerID != $1.sellerID { return $0.sellerID.utf8.lexicographicallyPrecedes($1.sellerID.utf8) }
            return $0.app == "ae" && $1.app == "lazada"
        }
        var popped: [AccountKey] = []
        while let next = queue.popDue(notAfter: Timestamp(millisecondsSince1970: 10)) { popped.append(next.key) }
        #expect(popped == expected)
        #expect(queue.count == 0)

        // Scheduled again (their slots kept), and replaced by a load.
        queue.schedule(keys[1], at: Timestamp(millisecondsSince1970: 50))
        #expect(queue.peek()?.key == keys[1])
        queue.load([ScheduledAccount(keys[2], due: Timestamp(millisecondsSince1970: 60))])
        #expect(queue.count == 1 && !queue.contains(keys[1]) && queue.peek()?.key == keys[2])
    }

    @Test func staleEntriesAreCompactedAway() {
        var queue = DeadlineQueue()
        for round in 0..<50 {
            for index in 0..<100 {
                queue.schedule("s\(index)", at: Timestamp(millisecondsSince1970: Int64(round * 1000 + index)))
            }
        }
        #expect(queue.count == 100)
        #expect(queue.storedEntries <= 2 * 100 + 1024 + 1)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct TokenBucketTests {
    /// A call that starts after its turn does not push the next one back:
    /// at 10 a second, a call 40 ms late is followed by the next on its own
    /// turn, 60 ms later, not 100; after a pause, no more than one call
    /// and a half are saved up.
    @Test func aLateCallDoesNotPushTheNextBack() {
        var bucket = TokenBucket(ratePerSecond: 10)
        let start = ManualWallClock.start
        let first = bucket.tryTake(start)
        let late = bucket.tryTake(start + .milliseconds(140))
        let next = bucket.nextAvailable(start + .milliseconds(140))
        let onItsTurn = bucket.tryTake(start + .milliseconds(200))
        #expect(first && late && onItsTurn)
        #expect(next == start + .milliseconds(200))
        // Ten seconds idle: two calls 50 ms apart, then the rate's spacing.
        let later = start + .seconds(10)
        let taken = [0, 49, 50, 149, 150].map { bucket.tryTake(later + .milliseconds($0)) }
        #expect(taken == [true, false, true, false, true])
    }

    @Test func callsAreSpacedByTheRate() {
        var bucket = TokenBucket(ratePerSecond: 4)
        let start = ManualWallClock.start
        let first = bucket.tryTake(start)
        let second = bucket.tryTake(start)
        let next = bucket.nextAvailable(start)
        let early = bucket.tryTake(start + .milliseconds(249))
        let onTime = bucket.tryTake(start + .milliseconds(250))
        #expect(first && !second && !early && onTime)
        #expect(next == start + .milliseconds(250))
    }

    @Test func clockSetBackwardsDoesNotStallCalls() {
        var bucket = TokenBucket(ratePerSecond: 10)
        let start = ManualWallClock.start
        let first = bucket.tryTake(start)
        let earlier = start - .seconds(3600)
        let atJump = bucket.tryTake(earlier)
        let afterJump = bucket.tryTake(earlier + .milliseconds(100))
        #expect(first && !atJump && afterJump)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct DispatchWakeupTimerTests {
    private final class Fired: Sendable {
        let count = Atomic<Int>(0)
    }

    @Test func firesAtAWallClockDeadline() async throws {
        let timer = DispatchWakeupTimer()
        let fired = Fired()
        timer.setHandler { fired.count.add(1, ordering: .sequentiallyConsistent) }
        timer.arm(at: SystemWallClock().now() + .milliseconds(20))
        try await waitUntil("the timer fired") { fired.count.load(ordering: .sequentiallyConsistent) == 1 }
        timer.cancel()
    }

    @Test func rearmingReplacesTheEarlierDeadline() async throws {
        let timer = DispatchWakeupTimer()
        let fired = Fired()
        timer.setHandler { fired.count.add(1, ordering: .sequentiallyConsistent) }
        let now = SystemWallClock().now()
        timer.arm(at: now + .seconds(3600))
        timer.arm(at: now + .milliseconds(10))
        try await waitUntil("the timer fired") { fired.count.load(ordering: .sequentiallyConsistent) == 1 }
        timer.cancel()
    }

    @Test func cancellingTwiceAndReleasingUnarmedTimersIsSafe() async throws {
        let cancelled = DispatchWakeupTimer()
        let fired = Fired()
        cancelled.setHandler { fired.count.add(1, ordering: .sequentiallyConsistent) }
        cancelled.cancel()
        cancelled.cancel()
        cancelled.arm(at: SystemWallClock().now())
        _ = DispatchWakeupTimer()  // released without ever being armed
        // A live timer armed for the same moment on a later deadline: once it
        // fired, the cancelled one would have fired too, had arm() worked.
        let control = DispatchWakeupTimer()
        let controlFired = Fired()
        control.setHandler { controlFired.count.add(1, ordering: .sequentiallyConsistent) }
        control.arm(at: SystemWallClock().now() + .milliseconds(50))
        try await waitUntil("the control timer fired") {
            controlFired.count.load(ordering: .sequentiallyConsistent) == 1
        }
        #expect(fired.count.load(ordering: .sequentiallyConsistent) == 0)
        control.cancel()
    }

    @Test func sleepsForTheWallClockDistanceButNeverLongerThanTheCap() {
        let clock = ManualWallClock()
        let timer = DispatchWakeupTimer(clock: clock, maximumSleep: .seconds(5))
        #expect(timer.sleep(until: clock.now() + .milliseconds(2_500)) == .milliseconds(2_500))
        #expect(timer.sleep(until: clock.now() + .seconds(3600)) == .milliseconds(5_000))
        #expect(timer.sleep(until: clock.now() - .seconds(10)) == .milliseconds(0))
        timer.cancel()
    }

    @Test func drivesARealSchedulerWithoutExecutorTrouble() async throws {
        // The real timer, the real clock and a scheduler actor: the handler
        // hops from Dispatch's queue into the actor with a task.
        let clock = SystemWallClock()
        let store = FakeAccountStore()
        let gateway = FakeTokenGateway(clock: clock) { [store] _, token in await store.isCurrentRefreshToken(token) }
        let events = EventRecorder(clock: clock)
        let now = clock.now()
        let account = Account(
            sellerID: "real", refreshToken: Secret("rt-real-initial"), accessToken: Secret("at-real-initial"),
            expireTime: now + .seconds(3600), accessTokenLifetime: .seconds(3600),
            nextRefreshAt: now + .milliseconds(100), updatedAt: now)
        await store.put(account)
        await gateway.register("real", refreshToken: account.refreshToken)
        let scheduler = RefreshScheduler(
            store: store, gateway: gateway, clock: clock,
            configuration: RefreshSchedulerConfiguration(tickInterval: .milliseconds(50)),
            timer: DispatchWakeupTimer(clock: clock), onEvent: { events.record($0) })
        let run = Task { try await scheduler.run() }

        try await waitUntil("the account is refreshed") { !events.refreshed("real").isEmpty }
        try await waitUntil("the loop ticks") { events.ticks >= 3 }
        run.cancel()
        try await run.value
        #expect(events.isStopped)
        #expect(await gateway.violations.isEmpty)
    }
}

@Suite struct RequiredLeadTests {
    let t0 = Timestamp(millisecondsSince1970: 1_000_000)

    @Test func aCrowdAtOneMomentNeedsItsCallsWorthOfLead() {
        var queue = DeadlineQueue()
        for index in 0..<50 { queue.schedule("a\(index)", at: t0) }
        #expect(queue.requiredLead(callsPerSecond: 10) == .milliseconds(4900))
        #expect(queue.requiredLead(callsPerSecond: 100) == .milliseconds(490))
    }

    /// The need is the most accounts due by a deadline a minute or more
    /// away, per second until it; nearer crowds and backlogs make a lead,
    /// not a need (a restart's overdue sellers are not a shortage of rate).
    @Test func theCallsNeededAreTheBusiestStretchFromNow() {
        var queue = DeadlineQueue()
        // A crowd of 100 due in 10 s, then 900 spaced 100 ms apart from 60 s.
        for index in 0..<100 { queue.schedule("near\(index)", at: t0 + .seconds(10)) }
        for index in 0..<900 {
            queue.schedule("far\(index)", at: t0 + .seconds(60) + .milliseconds(100 * Int64(index)))
        }
        let demand = queue.callDemand(now: t0) { _ in 10 }[.default]
        // The crowd due in 10 s is the lead's: not counted. By 60 s: 1 due
        // (0.02/s); by 149.9 s, the busiest: all 900, 6.0/s.
        #expect(demand?.needed == 900 / 149.9)
        #expect(queue.callDemand(now: t0) { _ in nil }.isEmpty, "no rate, no need")
        #expect(queue.callDemand(now: t0 + .seconds(100)) { _ in 10 }[.default]!.needed == 0, "none a minute away")
    }

    @Test func deadlinesSpacedByTheRateNeedNone() {
        var queue = DeadlineQueue()
        for index in 0..<50 { queue.schedule("b\(index)", at: t0 + .milliseconds(100 * Int64(index))) }
        #expect(queue.requiredLead(callsPerSecond: 10) == .zero)
        #expect(queue.requiredLead(callsPerSecond: 5) == .milliseconds(4900))
    }

    @Test func aLaterCrowdCountsOnlyItsOwnExcess() {
        var queue = DeadlineQueue()
        // Ten spread over the first 10 s, then thirty at 20 s.
        for index in 0..<10 { queue.schedule("early\(index)", at: t0 + .seconds(Int64(index))) }
        for index in 0..<30 { queue.schedule("crowd\(index)", at: t0 + .seconds(20)) }
        #expect(queue.requiredLead(callsPerSecond: 10) == .milliseconds(2900))
        queue.remove("crowd0")
        #expect(queue.requiredLead(callsPerSecond: 10) == .milliseconds(2800))
    }
}
