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

    public var reauthRequired: [(account: AccountKey, reason: String, requestID: String?)] {
        events.compactMap {
            if case .reauthRequired(let account, let reason, let requestID) = $0 {
                (account, reason, requestID)
            } else {
                nil
            }
        }
    }

    public func refreshed(_ account: AccountKey) -> [(nextDue: Timestamp, isFinalGrant: Bool)] {
        events.compactMap {
            if case .refreshed(account, _, let nextDue, let isFinal) = $0 { (nextDue, isFinal) } else { nil }
        }
    }

    /// Every rotation committed, with the manual time it was reported at.
    public var refreshes: [(at: Timestamp, account: AccountKey)] {
        all.compactMap {
            if case .refreshed(let account, _, _, _) = $0.event { ($0.at, account) } else { nil }
        }
    }

    public var failures: [(at: Timestamp, account: AccountKey, failure: GatewayFailure, nextDue: Timestamp)] {
        all.compactMap {
            if case .failed(let account, let failure, let nextDue) = $0.event {
                ($0.at, account, failure, nextDue)
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
