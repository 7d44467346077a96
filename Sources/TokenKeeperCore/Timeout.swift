import Dispatch
import Synchronization

/// A timer that fires once on a dispatch queue unless cancelled first, and
/// costs nothing once cancelled. What a timeout should wait on: a cancelled
/// `Task.sleep` keeps its task (about 450 bytes) until its deadline passes
/// (swiftlang/swift#60441), so a 30 s timeout raced against each of a
/// thousand calls a second held 30,000 of them, tens of megabytes.
public final class OneShotTimer: @unchecked Sendable {
    // @unchecked: the source is only scheduled, activated and cancelled,
    // which dispatch makes safe from any thread.
    private let source: any DispatchSourceTimer
    private static let queue = DispatchQueue(label: "tokenkeeper.timeouts")

    /// Calls `handler` once `delay` has passed, unless ``cancel()`` came first.
    public init(after delay: Duration, _ handler: @escaping @Sendable () -> Void) {
        source = DispatchSource.makeTimerSource(queue: Self.queue)
        let nanoseconds =
            max(0, delay.components.seconds) * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        source.schedule(deadline: .now() + .nanoseconds(Int(nanoseconds)), leeway: .milliseconds(10))
        source.setEventHandler(handler: handler)
        source.activate()
    }

    public func cancel() {
        source.cancel()
    }
}

/// Runs `body` in a task of its own, cancelled once `timeout` has passed;
/// then throws `timedOut()` (after `body` has ended, as a task group would
/// wait for it) unless `body` returned a value all the same. Cancelling the
/// caller cancels `body`.
public func withTimeout<Value: Sendable>(
    _ timeout: Duration, timedOut: @Sendable () -> any Error,
    _ body: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    let task = Task { try await body() }
    let fired = TimerFired()
    let timer = OneShotTimer(after: timeout) {
        fired.flag.store(true, ordering: .releasing)
        task.cancel()
    }
    defer { timer.cancel() }
    do {
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    } catch {
        if fired.flag.load(ordering: .acquiring) { throw timedOut() }
        throw error
    }
}

private final class TimerFired: Sendable {
    let flag = Atomic<Bool>(false)
}
