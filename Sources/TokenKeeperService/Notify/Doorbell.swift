import Synchronization

/// Wakes one waiting loop early: ``wait(upTo:)`` returns when ``ring()`` is
/// called or the time is up, whichever comes first. A ring while nobody
/// waits is kept for the next wait (at most one).
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Waits for a ring, at most `duration`; returns at once when cancelled.
    func wait(upTo duration: Duration) async {
        if state.withLock({ state in
            defer { state.rung = false }
            return state.rung
        }) {
            return
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.rung || Task.isCancelled {
                                state.rung = false
                                return true
                            }
                            state.waiter = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.ring()
                }
            }
            group.addTask {
                // Cancelled when the ring came first: then it must not ring.
                do {
                    try await Task.sleep(for: duration)
                    self.ring()
                } catch {}
            }
            await group.next()
            group.cancelAll()
        }
    }
}
