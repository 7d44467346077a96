import Dispatch

/// A serial executor that runs its jobs on a `DispatchQueue`, so that an
/// actor using it keeps blocking work (SQLite's fsyncs and busy waits) off
/// Swift's cooperative thread pool.
///
/// `DispatchSerialQueue` (which is a `SerialExecutor` on Apple platforms) does
/// not exist in corelibs-libdispatch, hence this small adapter.
final class DispatchQueueExecutor: SerialExecutor {
    let queue: DispatchQueue
    private static let key = DispatchSpecificKey<ObjectIdentifier>()

    init(label: String) {
        queue = DispatchQueue(label: label)
        queue.setSpecific(key: Self.key, value: ObjectIdentifier(self))
    }

    /// True on this executor's queue (and so not on the cooperative pool).
    var isCurrent: Bool {
        DispatchQueue.getSpecific(key: Self.key) == ObjectIdentifier(self)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async {
            job.runSynchronously(on: self.asUnownedSerialExecutor())
        }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        dispatchPrecondition(condition: .onQueue(queue))
    }

    /// Runs `body` on the queue and returns its result to the async caller:
    /// for blocking work that happens before the actor exists (opening files).
    func run<T>(_ body: @escaping @Sendable () throws -> sending T) async throws -> sending T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            queue.async {
                do {
                    continuation.resume(returning: try body())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}
