public import RefreshScheduler
import Synchronization
public import TokenKeeperCore

/// The scheduler's one timer, fired by the test when its manual clock
/// reaches the armed deadline.
public final class ManualWakeupTimer: WakeupTimer {
    public init() {}

    private struct State {
        var handler: (@Sendable () async -> Void)?
        var deadline: Timestamp?
        var arms = 0
        var cancels = 0
    }

    private let state = Mutex(State())

    public func setHandler(_ handler: @escaping @Sendable () async -> Void) {
        state.withLock { $0.handler = handler }
    }

    public func arm(at deadline: Timestamp) {
        state.withLock { state in
            guard state.cancels == 0 else { return }
            state.deadline = deadline
            state.arms += 1
        }
    }

    public func cancel() {
        state.withLock { state in
            state.cancels += 1
            state.deadline = nil
        }
    }

    /// The armed deadline (nil once fired or cancelled).
    public var deadline: Timestamp? { state.withLock { $0.deadline } }
    /// How often the scheduler armed the timer.
    public var armCount: Int { state.withLock { $0.arms } }
    public var isCancelled: Bool { state.withLock { $0.cancels > 0 } }

    /// Fires the handler (as the real timer does once its deadline passes)
    /// and waits until the scheduler has handled the wake-up.
    public func fire() async {
        let handler = state.withLock { state -> (@Sendable () async -> Void)? in
            state.deadline = nil
            return state.handler
        }
        await handler?()
    }
}
