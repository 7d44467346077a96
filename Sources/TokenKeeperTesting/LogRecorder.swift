public import Logging
import Synchronization

/// Keeps every log line with its level and metadata, for assertions on what
/// was logged (and that no secret was).
public final class LogRecorder: Sendable {
    public struct Line: Sendable {
        public var level: Logger.Level
        public var message: String
        public var metadata: [String: String]

        /// The whole line as a reader of the journal would see it: level,
        /// message and the metadata sorted by key.
        public var rendered: String {
            "\(level) \(message) "
                + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
    }

    private let lines = Mutex<[Line]>([])

    public init() {}

    /// Every line so far, oldest first.
    public var all: [Line] { lines.withLock { $0 } }

    /// Every line so far, rendered.
    public var rendered: [String] { all.map(\.rendered) }

    public func lines(atLeast level: Logger.Level) -> [Line] {
        all.filter { $0.level >= level }
    }

    /// A logger at trace level whose lines land here.
    public func logger(label: String = "test") -> Logger {
        var logger = Logger(label: label) { _ in Handler(recorder: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ line: Line) {
        lines.withLock { $0.append(line) }
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
