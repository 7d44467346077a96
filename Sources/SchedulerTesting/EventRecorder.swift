import Logging
public import RefreshScheduler
import Synchronization
public import TokenKeeperCore

/// Collects the scheduler's events with the manual time they arrived at.
public final class EventRecorder: Sendable {
    public struct Entry: Sendable {
        public var at: Timestamp
        public var event: SchedulerEvent
    }

    private let entries = Mutex<[Entry]>([])
    private let clock: any WallClock

    public init(clock: any WallClock) {
        self.clock = clock
    }

    public func record(_ event: SchedulerEvent) {
        let now = clock.now()
        entries.withLock { $0.append(Entry(at: now, event: event)) }
    }

    public var all: [Entry] { entries.withLock { $0 } }
    public var events: [SchedulerEvent] { all.map(\.event) }

    public var degraded: [DegradedReason] {
        events.compactMap { if case .degraded(let reason) = $0 { reason } else { nil } }
    }

    public var recovered: [DegradedReason] {
        events.compactMap { if case .recovered(let reason) = $0 { reason } else { nil } }
    }

    public var reauthRequired: [(sellerID: String, reason: String, requestID: String?)] {
        events.compactMap {
            if case .reauthRequired(let seller, let reason, let requestID) = $0 {
                (seller, reason, requestID)
            } else {
                nil
            }
        }
    }

    public func refreshed(_ sellerID: String) -> [(nextDue: Timestamp, isFinalGrant: Bool)] {
        events.compactMap {
            if case .refreshed(sellerID, _, let nextDue, let isFinal) = $0 { (nextDue, isFinal) } else { nil }
        }
    }

    public var failures: [(at: Timestamp, sellerID: String, failure: GatewayFailure, nextDue: Timestamp)] {
        all.compactMap {
            if case .failed(let seller, let failure, let nextDue) = $0.event {
                ($0.at, seller, failure, nextDue)
            } else {
                nil
            }
        }
    }

    public var ticks: Int {
        events.filter { if case .tick = $0 { true } else { false } }.count
    }

    public var isReady: Bool {
        events.contains { if case .ready = $0 { true } else { false } }
    }

    public var isStopped: Bool {
        events.contains { if case .stopped = $0 { true } else { false } }
    }
}
