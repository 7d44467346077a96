import Logging
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

/// A scheduler wired to fakes, a manual clock and a manual timer, with the
/// moves a test needs: start it, let time pass, wait for conditions.
struct SchedulerHarness {
    let clock: ManualWallClock
    let timer: ManualWakeupTimer
    let store: FakeAccountStore
    let gateway: FakeTokenGateway
    let events: EventRecorder
    let logs: LogRecorder
    let scheduler: RefreshScheduler
    let configuration: RefreshSchedulerConfiguration

    static let owner = "test-daemon"

    init(
        concurrency: Int = 4, maxCallsPerSecond: Double? = nil, tickInterval: Duration = .seconds(5),
        policy: RefreshPolicy = RefreshPolicy(), probeInterval: Duration = .seconds(60),
        shutdownGracePeriod: Duration = .seconds(8), massRejection: MassRejectionPolicy = MassRejectionPolicy(),
        seed: UInt64 = 42
    ) {
        clock = ManualWallClock()
        timer = ManualWakeupTimer()
        store = FakeAccountStore()
        gateway = FakeTokenGateway(clock: clock, store: store)
        events = EventRecorder(clock: clock)
        logs = LogRecorder()
        configuration = RefreshSchedulerConfiguration(
            policy: policy, concurrency: concurrency, maxCallsPerSecond: maxCallsPerSecond, leaseOwner: Self.owner,
            leaseDuration: .seconds(90), tickInterval: tickInterval, configurationProbeInterval: probeInterval,
            shutdownGracePeriod: shutdownGracePeriod, massRejection: massRejection)
        let events = events
        scheduler = RefreshScheduler(
            store: store, gateway: gateway, clock: clock, configuration: configuration, timer: timer,
            random: SeededRandom(seed: seed), logger: logs.logger(), onEvent: { events.record($0) })
    }

    var now: Timestamp { clock.now() }

    /// An active account whose access token (lifetime one hour) expires in
    /// `expiresIn` and whose next refresh is `due` from now.
    @discardableResult
    func addAccount(
        _ sellerID: String, due: Duration? = .zero, expiresIn: Duration = .seconds(3600),
        lifetime: Duration = .seconds(3600), failedAttempts: Int = 0, lease: Lease? = nil
    ) async -> Account {
        let now = clock.now()
        let account = Account(
            sellerID: sellerID, refreshToken: Secret("rt-\(sellerID)-initial"),
            accessToken: Secret("at-\(sellerID)-initial"), expireTime: now + expiresIn,
            accessTokenLifetime: lifetime, refreshTokenValidTime: now + .seconds(30 * 86_400),
            nextRefreshAt: due.map { now + $0 }, failedAttempts: failedAttempts,
            refreshedAt: now + expiresIn - lifetime, lease: lease, updatedAt: now)
        await store.put(account)
        await gateway.register(sellerID, refreshToken: account.refreshToken)
        return account
    }

    /// Starts `run()` and waits until the schedule is loaded.
    @discardableResult
    func start() async throws -> Task<Void, any Error> {
        let scheduler = scheduler
        let task = Task { try await scheduler.run() }
        try await waitUntil("the scheduler is ready") { events.isReady }
        return task
    }

    /// Fires the timer while it is due at the current time, and waits until
    /// the scheduler has nothing running (no held calls allowed).
    func settle(sourceLocation: SourceLocation = #_sourceLocation) async {
        var fires = 0
        await waitUntilIdle(sourceLocation: sourceLocation)
        while let deadline = timer.deadline, deadline <= clock.now(), !Task.isCancelled {
            fires += 1
            guard fires <= 1000 else {
                Issue.record(
                    "the timer keeps firing at \(clock.now()) without the scheduler making progress",
                    sourceLocation: sourceLocation)
                return
            }
            await timer.fire()
            await waitUntilIdle(sourceLocation: sourceLocation)
        }
    }

    /// Lets manual time pass, firing the timer at each armed deadline on the
    /// way and letting the scheduler finish its work at each.
    func advance(by duration: Duration, sourceLocation: SourceLocation = #_sourceLocation) async {
        await advance(to: clock.now() + duration, sourceLocation: sourceLocation)
    }

    func advance(to target: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) async {
        await settle(sourceLocation: sourceLocation)
        while let deadline = timer.deadline, deadline <= target, !Task.isCancelled {
            if deadline > clock.now() { clock.set(deadline) }
            await settle(sourceLocation: sourceLocation)
        }
        if target > clock.now() { clock.set(target) }
    }

    /// Waits, bounded in real time, until the scheduler has no attempt running.
    private func waitUntilIdle(sourceLocation: SourceLocation) async {
        let scheduler = scheduler
        let idle = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await scheduler.waitUntilIdle()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !idle {
            Issue.record("the scheduler did not become idle within 10 seconds", sourceLocation: sourceLocation)
        }
    }

    /// Moves the clock and fires the timer without waiting for attempts to end
    /// (for tests that hold gateway calls).
    func advanceWithoutWaiting(by duration: Duration) async {
        let target = clock.now() + duration
        var fires = 0
        while let deadline = timer.deadline, deadline <= target, fires < 10_000 {
            if deadline > clock.now() { clock.set(deadline) }
            await timer.fire()
            fires += 1
        }
        #expect(fires < 10_000, "the timer keeps firing without progress")
        if target > clock.now() { clock.set(target) }
    }

    /// Fires the timer if due without waiting for attempts to end.
    func fireIfDue() async {
        if let deadline = timer.deadline, deadline <= clock.now() { await timer.fire() }
    }
}

/// Waits (in real time, bounded) until `condition` holds; records an issue if
/// it never does.
func waitUntil(
    _ description: String, timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var spins = 0
    while try await !condition() {
        guard clock.now < deadline else {
            Issue.record("timed out waiting until \(description)", sourceLocation: sourceLocation)
            return
        }
        spins += 1
        if spins < 100 { await Task.yield() } else { try await Task.sleep(for: .milliseconds(1)) }
    }
}
