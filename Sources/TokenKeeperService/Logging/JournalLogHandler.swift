public import Logging
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one line per event to standard error, in a form journald keeps well:
/// under systemd (`JOURNAL_STREAM` set) each line starts with `<N>`, the syslog
/// priority, and carries no timestamp (the journal adds one); in a terminal it
/// starts with an ISO 8601 time. Metadata follows as sorted `key=value` pairs,
/// so `seller=… outcome=… request_id=…` can be grepped.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let journalFormat: Bool

    public init(label: String, level: Logger.Level, journalFormat: Bool) {
        self.label = label
        self.logLevel = level
        self.journalFormat = journalFormat
    }

    /// Installs the handler for the process. `LoggingSystem.bootstrap` may run once only.
    public static func bootstrap(level: Logger.Level, environment: [String: String]) {
        let journal = environment["JOURNAL_STREAM"] != nil
        LoggingSystem.bootstrap { label in
            JournalLogHandler(label: label, level: level, journalFormat: journal)
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var line = journalFormat ? "<\(Self.priority(event.level))>" : "\(TimeText.now()) "
        line += "\(event.level.rawValue.uppercased()) \(event.message)"
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.quoted("\(value)"))"
        }
        line = line.replacingNewlines() + "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func quoted(_ value: String) -> String {
        value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" })
            ? "\"\(value.replacingOccurrences(of: "\"", with: "\\\""))\"" : value
    }
}

extension String {
    /// Journald treats a newline as the end of an entry; keep one event on one line.
    fileprivate func replacingNewlines() -> String {
        contains("\n") ? replacingOccurrences(of: "\n", with: "\\n") : self
    }

    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

enum TimeText {
    static func now() -> String {
        "\(SystemWallClock().now())"
    }
}
