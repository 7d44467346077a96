public import Dispatch
import Synchronization
public import TokenKeeperCore

/// A ``WakeupTimer`` over one `DispatchSourceTimer`.
///
/// Deadlines are wall-clock times, but the source is armed on the monotonic
/// clock for the wall-clock distance to the deadline, and never for longer
/// than `maximumSleep`. A wall-clock (`DispatchWallTime`) source would follow
/// a clock that is stepped forward, but when the clock is stepped back it
/// sleeps for the whole step — an hour without ticks gets the daemon killed by
/// the watchdog. With the cap, the scheduler wakes, reads the wall clock again
/// and re-arms at least every `maximumSleep`, so a step either way costs at
/// most that much lateness. A wake-up that comes early does no harm: the
/// scheduler only does what is due by its clock.
///
/// On Linux a `DispatchSourceTimer` crashes the process if it is released
/// before activation, while suspended, or resumed twice. So the source is
/// activated once, here in `init`, never suspended, and cancelled once.
public final class DispatchWakeupTimer: WakeupTimer, @unchecked Sendable {
    // @unchecked: `DispatchSourceTimer` is not marked Sendable, but a dispatch
    // source is thread-safe; everything else mutable is behind `state`.
    private let source: any DispatchSourceTimer
    private let state = Mutex<State>(State())
    private let clock: any WallClock
    private let maximumSleep: Duration
    private let leeway: DispatchTimeInterval

    private struct State {
        var handler: (@Sendable () async -> Void)?
        var cancelled = false
    }

    /// - Parameters:
    ///   - clock: The wall clock the deadlines are read against.
    ///   - maximumSleep: The longest the timer sleeps before the scheduler
    ///     looks at the wall clock again.
    ///   - leeway: How late the system may fire to batch wake-ups.
    ///   - queue: Where the dispatch source runs its event handler; the handler
    ///     only starts a task, so any queue will do.
    public init(
        clock: any WallClock = SystemWallClock(), maximumSleep: Duration = .seconds(5),
        leeway: DispatchTimeInterval = .milliseconds(10),
        queue: DispatchQueue = DispatchQueue(label: "tokenkeeper.refresh-scheduler.timer")
    ) {
        self.clock = clock
        self.maximumSleep = max(maximumSleep, .milliseconds(1))
        self.leeway = leeway
        source = DispatchSource.makeTimerSource(queue: queue)
        source.setEventHandler { [weak self] in
            self?.fire()
        }
        source.schedule(deadline: .distantFuture, leeway: leeway)
        source.activate()
    }

    deinit {
        cancel()
    }

    public func setHandler(_ handler: @escaping @Sendable () async -> Void) {
        state.withLock { $0.handler = handler }
    }

    public func arm(at deadline: Timestamp) {
        let cancelled = state.withLock { $0.cancelled }
        guard !cancelled else { return }
        source.schedule(deadline: .now() + sleep(until: deadline), leeway: leeway)
    }

    public func cancel() {
        let first = state.withLock { state in
            defer { state.cancelled = true }
            return !state.cancelled
        }
        if first { source.cancel() }
    }

    /// How long to sleep for `deadline`: its wall-clock distance, at most
    /// `maximumSleep`, never negative.
    func sleep(until deadline: Timestamp) -> DispatchTimeInterval {
        let distance = min(max(deadline - clock.now(), .zero), maximumSleep)
        return .milliseconds(Int(distance.wholeMilliseconds))
    }

    private func fire() {
        let handler = state.withLock { $0.cancelled ? nil : $0.handler }
        guard let handler else { return }
        // The dispatch queue is not the scheduler's executor: hop with a task.
        Task { await handler() }
    }
}
