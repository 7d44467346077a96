import Foundation
import Testing

@testable import TokenKeeperService

@Suite struct ImportChunkTests {
    /// Lines split on newline bytes, read in place: a last line without a
    /// newline, empty lines, CRLF (the carriage return stays, for the parser
    /// to judge), multi-byte characters, and a chunk full after every second line.
    @Test func linesAreSplitOnNewlineBytesAndTheChunkIsStoredWhenFull() async throws {
        let text = "{\"a\":1}\n\nzürich ✓\r\n{\"b\":2}\n\n{\"c\":3}"
        var seen: [String] = []
        var fullAfter: [Int] = []
        try await ImportChunk.forEachLine(in: Data(text.utf8)) { line in
            seen.append(String(line))
            return seen.count % 2 == 0
        } whenFull: {
            fullAfter.append(seen.count)
        }
        #expect(seen == ["{\"a\":1}", "", "zürich ✓\r", "{\"b\":2}", "", "{\"c\":3}"])
        #expect(fullAfter == [2, 4, 6])
    }

    @Test func anEmptyFileHasNoLineAndAFileOfOneNewlineHasOneEmptyLine() async throws {
        for (text, expected) in [("", [String]()), ("\n", [""]), ("x\n", ["x"])] {
            var seen: [String] = []
            try await ImportChunk.forEachLine(in: Data(text.utf8)) { line in
                seen.append(String(line))
                return false
            } whenFull: {
            }
            #expect(seen == expected, "\(text.debugDescription)")
        }
    }
}
