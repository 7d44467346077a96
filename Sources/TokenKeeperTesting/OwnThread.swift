import Dispatch

/// Work that blocks (waiting for a child process) run on a thread of its
/// own: on one of Swift's few cooperative threads it would stall every
/// other test's tasks meanwhile (a scheduler test's ten-second bound among them).
public enum OwnThread {
    public static func run<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }
}
