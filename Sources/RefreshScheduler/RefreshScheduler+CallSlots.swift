import TokenKeeperCore

/// `refresh.concurrency` counts calls at the gateway, not attempts: an
/// attempt takes its lease and reads its account before it waits for a slot,
/// and makes its outcome durable after it gives the slot back, so that the
/// store's writes (each waiting for a group commit) never hold a slot.
extension RefreshScheduler {
    /// Attempts that may be under way, four for each call slot: beyond the
    /// calls, each holds its lease and waits for a slot, ready to call the
    /// moment one frees, or waits for its outcome's group commit. With two
    /// for each slot, attempts waiting on commits left slots idle: 4,190 refreshes/s at concurrency 64 against
    /// 4,490 with four times (`Benchmarks --only throughput`, five runs each).
    var attemptsAllowed: Int { configuration.concurrency * 4 }

    struct CallWaiter {
        /// The deadline its attempt was started for; forced attempts have
        /// none and go first.
        var planned: Timestamp?
        var continuation: CheckedContinuation<Bool, Never>

        func goesBefore(_ other: CallWaiter) -> Bool {
            guard let planned else { return other.planned != nil }
            return other.planned.map { planned < $0 } ?? false
        }
    }

    /// Waits for one of the call slots, earliest deadline first. False when
    /// the scheduler began to stop meanwhile: the attempt gives up its lease
    /// without calling.
    func takeCallSlot(planned: Timestamp?) async -> Bool {
        guard phase == .idle || phase == .running else { return false }
        if callsInFlight < configuration.concurrency, callWaiters.isEmpty {
            callsInFlight += 1
            return true
        }
        return await withCheckedContinuation { continuation in
            let waiter = CallWaiter(planned: planned, continuation: continuation)
            let index = callWaiters.firstIndex { waiter.goesBefore($0) } ?? callWaiters.endIndex
            callWaiters.insert(waiter, at: index)
        }
    }

    func releaseCallSlot() {
        callsInFlight -= 1
        handOverCallSlots()
    }

    /// Gives free slots to waiting attempts (after a call, or when the
    /// concurrency was raised).
    func handOverCallSlots() {
        while callsInFlight < configuration.concurrency, !callWaiters.isEmpty {
            callsInFlight += 1
            callWaiters.removeFirst().continuation.resume(returning: true)
        }
    }

    /// At a stop: every attempt waiting for a slot gives up without calling.
    func dismissCallWaiters() {
        let waiting = callWaiters
        callWaiters.removeAll()
        for waiter in waiting { waiter.continuation.resume(returning: false) }
    }
}
