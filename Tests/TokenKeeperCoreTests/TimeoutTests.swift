import Synchronization
import Testing
import TokenKeeperCore

@Suite(.timeLimit(.minutes(1)))
struct TimeoutTests {
    struct TimedOut: Error {}

    @Test func aBodyThatEndsInTimeGivesItsValue() async throws {
        let value = try await withTimeout(.seconds(30), timedOut: { TimedOut() }) { 42 }
        #expect(value == 42)
    }

    @Test func aBodyThatEndsInTimeGivesItsOwnError() async throws {
        struct Own: Error {}
        await #expect(throws: Own.self) {
            try await withTimeout(.seconds(30), timedOut: { TimedOut() }) { () async throws -> Int in throw Own() }
        }
    }

    /// The body is cancelled when the time is up, and the caller is told it
    /// timed out (not the body's CancellationError).
    @Test func aBodyStillRunningIsCancelledAndTheTimeoutThrown() async throws {
        let started = ContinuousClock.now
        await #expect(throws: TimedOut.self) {
            try await withTimeout(.milliseconds(50), timedOut: { TimedOut() }) {
                try await Task.sleep(for: .seconds(60))
            }
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func cancellingTheCallerCancelsTheBody() async throws {
        let cancelled = Atomic<Bool>(false)
        let entered = AsyncStream<Void>.makeStream()
        let caller = Task {
            try await withTimeout(.seconds(60), timedOut: { TimedOut() }) {
                entered.continuation.yield()
                do {
                    try await Task.sleep(for: .seconds(60))
                } catch {
                    cancelled.store(true, ordering: .sequentiallyConsistent)
                    throw error
                }
            }
        }
        for await _ in entered.stream { break }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        let wasCancelled = cancelled.load(ordering: .sequentiallyConsistent)
        #expect(wasCancelled)
    }

    @Test func aCancelledTimerNeverFires() async throws {
        let fired = Atomic<Int>(0)
        let cancelledTimer = OneShotTimer(after: .milliseconds(20)) { fired.add(1, ordering: .sequentiallyConsistent) }
        cancelledTimer.cancel()
        let (stream, continuation) = AsyncStream<Void>.makeStream()
        let timer = OneShotTimer(after: .milliseconds(40)) { continuation.yield() }
        for await _ in stream { break }
        _ = timer
        let firings = fired.load(ordering: .sequentiallyConsistent)
        #expect(firings == 0)
    }
}
