import NIOConcurrencyHelpers

/// A value behind a lock, with `Mutex`'s `withLock` (typed throws included).
///
/// The simulator serves many connections at once, and its tests run under
/// ThreadSanitizer. Synchronization's `Mutex` locks with atomics inside the
/// uninstrumented standard library on Linux, so ThreadSanitizer cannot see it
/// and reports every access it guards as a race; NIO's lock is a pthread
/// mutex, which ThreadSanitizer understands.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NIOLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
