public import RefreshScheduler
public import Testing
public import TokenKeeperCore
public import TokenKeeperTesting

/// Drives a scheduler built on a manual clock and a manual timer: starts it,
/// lets manual time pass firing the timer at each armed deadline, and waits
/// (bounded in real time) for the scheduler to finish the work each firing
/// started. The same moves whatever store the scheduler runs over.
public struct SchedulerDriver: Sendable {
    public let clock: ManualWallClock
    public let timer: ManualWakeupTimer
    public let events: EventRecorder
    public let scheduler: RefreshScheduler

    public init(clock: ManualWallClock, timer: ManualWakeupTimer, events: EventRecorder, scheduler: RefreshScheduler) {
        self.clock = clock
        self.timer = timer
        self.events = events
        self.scheduler = scheduler
    }

    public var now: Timestamp { clock.now() }

    /// Starts `run()` and waits until the schedule is loaded.
    @discardableResult
    public func start() async throws -> Task<Void, any Error> {
        let scheduler = scheduler
        let task = Task { try await scheduler.run() }
        try await waitUntil("the scheduler is ready") { events.isReady }
        return task
    }

    /// Fires the timer while it is due at the current time, and waits until
    /// the scheduler has nothing running (no held calls allowed).
    public func settle(sourceLocation: SourceLocation = #_sourceLocation) async {
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
    public func advance(by duration: Duration, sourceLocation: SourceLocation = #_sourceLocation) async {
        await advance(to: clock.now() + duration, sourceLocation: sourceLocation)
    }

    public func advance(to target: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) async {
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
    public func advanceWithoutWaiting(by duration: Duration) async {
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
    public func fireIfDue() async {
        if let deadline = timer.deadline, deadline <= clock.now() { await timer.fire() }
    }
}
