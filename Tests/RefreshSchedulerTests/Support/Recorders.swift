import Logging
import RefreshScheduler
import Synchronization
import TokenKeeperCore

/// Collects the scheduler's events with the manual time they arrived at.
final class EventRecorder: Sendable {
    struct Entry: Sendable {
        var at: Timestamp
        var event: SchedulerEvent
    }

    private let entries = Mutex<[Entry]>([])
    private let clock: any WallClock

    init(clock: any WallClock) {
        self.clock = clock
    }

    func record(_ event: SchedulerEvent) {
        let now = clock.now()
        entries.withLock { $0.append(Entry(at: now, event: event)) }
    }

    var all: [Entry] { entries.withLock { $0 } }
    var events: [SchedulerEvent] { all.map(\.event) }

    var degraded: [DegradedReason] {
        events.compactMap { if case .degraded(let reason) = $0 { reason } else { nil } }
    }

    var recovered: [DegradedReason] {
        events.compactMap { if case .recovered(let reason) = $0 { reason } else { nil } }
    }

    var reauthRequired: [(sellerID: String, reason: String, requestID: String?)] {
        events.compactMap {
            if case .reauthRequired(let seller, let reason, let requestID) = $0 {
                (seller, reason, requestID)
            } else {
                nil
            }
        }
    }

    func refreshed(_ sellerID: String) -> [(nextDue: Timestamp, isFinalGrant: Bool)] {
        events.compactMap {
            if case .refreshed(sellerID, _, let nextDue, let isFinal) = $0 { (nextDue, isFinal) } else { nil }
        }
    }

    var failures: [(at: Timestamp, sellerID: String, failure: GatewayFailure, nextDue: Timestamp)] {
        all.compactMap {
            if case .failed(let seller, let failure, let nextDue) = $0.event {
                ($0.at, seller, failure, nextDue)
            } else {
                nil
            }
        }
    }

    var ticks: Int {
        events.filter { if case .tick = $0 { true } else { false } }.count
    }

    var isReady: Bool {
        events.contains { if case .ready = $0 { true } else { false } }
    }

    var isStopped: Bool {
        events.contains { if case .stopped = $0 { true } else { false } }
    }
}
