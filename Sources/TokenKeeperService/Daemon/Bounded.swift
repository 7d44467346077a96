import Synchronization
import TokenKeeperCore

/// Waiting for work that may not end in time.
enum Bounded {
    /// Runs `work`, waiting for it at most `limit`; false when it did not
    /// end in time (it is then left running: a task group would wait for it).
    static func within(_ limit: Duration, _ work: @escaping @Sendable () async -> Void) async -> Bool {
        let first = Mutex<CheckedContinuation<Bool, Never>?>(nil)
        return await withCheckedContinuation { continuation in
            first.withLock { $0 = continuation }
            let resume: @Sendable (Bool) -> Void = { value in first.withLock { $0.take() }?.resume(returning: value) }
            // Not a sleeping task: a cancelled one is kept until its deadline.
            let timer = OneShotTimer(after: limit) { resume(false) }
            Task {
                await work()
                timer.cancel()
                resume(true)
            }
        }
    }
}
