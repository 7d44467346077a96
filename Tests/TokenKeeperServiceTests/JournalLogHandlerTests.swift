import Logging
import Testing

@testable import TokenKeeperService

@Suite("The log handler escapes what could forge a line")
struct JournalLogHandlerTests {
    static func line(_ message: Logger.Message, _ metadata: Logger.Metadata = [:]) -> String {
        let handler = JournalLogHandler(label: "test", level: .trace, journalFormat: true)
        return handler.line(
            for: LogEvent(
                level: .warning, message: message, metadata: metadata, source: nil, file: #fileID, function: #function,
                line: #line))
    }

    /// Every character that ends a journal entry, starts a forged one, or
    /// changes what a terminal shows.
    static let hostile: [(String, String)] = [
        ("\r\n", "\\r\\n"), ("\n", "\\n"), ("\r", "\\r"), ("\u{85}", "\\u{85}"), ("\u{2028}", "\\u{2028}"),
        ("\u{2029}", "\\u{2029}"), ("\u{1B}", "\\u{1B}"), ("\u{0}", "\\u{0}"), ("\t", "\\t"), ("\u{7F}", "\\u{7F}"),
        ("\u{202E}", "\\u{202E}"), ("\\", "\\\\"),
    ]

    @Test("each control character, in a value, a key or the message, is written as an escape", arguments: hostile)
    func controlCharacterIsEscaped(raw: String, escape: String) {
        let forged = "x\(raw)<2>CRITICAL forged"
        let line = Self.line("m\(raw)", ["error": "\(forged)", "k\(raw)": "v"])
        #expect(line.hasSuffix("\n"))
        let body = line.dropLast()
        #expect(
            !body.unicodeScalars.contains { ($0.value < 0x20 && $0 != " ") || (0x7F...0x9F).contains($0.value) },
            "no raw control character: \(body.debugDescription)")
        #expect(!body.unicodeScalars.contains { [0x2028, 0x2029, 0x202E].contains($0.value) })
        #expect(body.contains("m\(escape)"), "\(body.debugDescription)")
        #expect(body.contains("k\(escape)=v"), "\(body.debugDescription)")
        #expect(body.contains("x\(escape)<2>CRITICAL"), "\(body.debugDescription)")
        #expect(body.hasPrefix("<4>WARNING "))
    }

    @Test("plain text and non-ASCII letters are written as they are")
    func plainTextIsUnchanged() {
        #expect(
            Self.line("seller refreshed", ["seller": "1001", "shop": "Åsa ß 店"])
                == "<4>WARNING seller refreshed seller=1001 shop=\"Åsa ß 店\"\n")
    }
}
