import RefreshScheduler
import Synchronization
import Testing

@testable import TokenKeeperService

/// Work that waits for READY (the tokens.db check, the first count) starts
/// once the schedule is loaded, and a stop before that does not hang it.
@Suite struct DaemonStatusReadyTests {
    @Test func waitersResumeAtReadyAndLaterOnesAtOnce() async {
        let status = DaemonStatus(notifier: SystemdNotifier(environment: [:]))
        let resumed = Mutex(false)
        let waiter = Task {
            await status.waitUntilReady()
            resumed.withLock { $0 = true }
        }
        // Not before READY: give the waiter every chance to run first.
        for _ in 0..<100 { await Task.yield() }
        #expect(!resumed.withLock { $0 })
        status.handle(.ready(SchedulerSnapshot()))
        await waiter.value
        #expect(resumed.withLock { $0 })
        await status.waitUntilReady()  // already ready: returns at once
    }

    @Test func aCancelledWaiterReturnsWithoutReady() async {
        let status = DaemonStatus(notifier: SystemdNotifier(environment: [:]))
        let waiter = Task { await status.waitUntilReady() }
        for _ in 0..<100 { await Task.yield() }
        waiter.cancel()
        await waiter.value
    }
}
