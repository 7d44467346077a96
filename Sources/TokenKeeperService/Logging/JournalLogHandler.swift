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
        var bytes = Array(line(for: event).utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }

    /// The line written for `event`, with its newline: the message, keys and
    /// values escaped (``escaped(_:)``), so that nothing a stranger sent
    /// (a callback's query, a gateway's answer) can end the entry or start
    /// a forged one.
    func line(for event: LogEvent) -> String {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var line = journalFormat ? "<\(Self.priority(event.level))>" : "\(TimeText.now()) "
        line += "\(event.level.rawValue.uppercased()) \(Self.escaped("\(event.message)"))"
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(Self.escaped(key))=\(Self.quoted(Self.escaped("\(value)")))"
        }
        return line + "\n"
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

    /// `text` with every character that could end a journal entry, start a
    /// forged one or change how a terminal shows the line written as an
    /// escape: the C0 controls (NUL, ESC, CR, LF — CR-LF included, which
    /// Swift counts as one `Character`), DEL, the C1 controls (NEL among
    /// them), the line and paragraph separators, the bidirectional
    /// overrides and isolates; and the backslash itself, so that an escape
    /// in the log always means an escaped character.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                out.append(scalar)
                continue
            }
            let escape: String =
                switch scalar {
                case "\n": "\\n"
                case "\r": "\\r"
                case "\t": "\\t"
                case "\\": "\\\\"
                default: "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                }
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x5C: true
        case 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    static func quoted(_ value: String) -> String {
        value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" })
            ? "\"" + value.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\\\"") + "\""
            : value
    }
}

enum TimeText {
    static func now() -> String {
        "\(SystemWallClock().now())"
    }
}
