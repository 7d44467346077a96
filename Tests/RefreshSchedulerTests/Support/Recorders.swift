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
            if case .reauthRequired(let seller, let reason, let requestID) = $0 { (seller, reason, requestID) } else { nil }
        }
    }

    func refreshed(_ sellerID: String) -> [(nextDue: Timestamp, isFinalGrant: Bool)] {
        events.compactMap {
            if case .refreshed(sellerID, _, let nextDue, let isFinal) = $0 { (nextDue, isFinal) } else { nil }
        }
    }

    var failures: [(at: Timestamp, sellerID: String, failure: GatewayFailure, nextDue: Timestamp)] {
        all.compactMap {
            if case .failed(let seller, let failure, let nextDue) = $0.event { ($0.at, seller, failure, nextDue) } else { nil }
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

/// A log handler that keeps every line, for assertions on what was logged
/// (and that no secret was).
final class LogRecorder: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]

        /// The whole line as a reader of the journal would see it.
        var rendered: String {
            message + " " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
    }

    private let lines = Mutex<[Line]>([])

    var all: [Line] { lines.withLock { $0 } }

    func append(_ line: Line) {
        lines.withLock { $0.append(line) }
    }

    func logger() -> Logger {
        var logger = Logger(label: "test.scheduler") { _ in Handler(recorder: self) }
        logger.logLevel = .trace
        return logger
    }

    func lines(atLeast level: Logger.Level) -> [Line] {
        all.filter { $0.level >= level }
    }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var flat: [String: String] = [:]
            for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
                flat[key] = "\(value)"
            }
            recorder.append(Line(level: event.level, message: "\(event.message)", metadata: flat))
        }
    }
}
