import Foundation
import SQLiteStore
import TokenKeeperCore

/// Parsed lines of an import file waiting to be stored together.
struct ImportChunk {
    var records: [ImportRecord] = []
    /// The line number of each record.
    var lines: [Int] = []

    init() {
        records.reserveCapacity(Commands.importChunkLines)
        lines.reserveCapacity(Commands.importChunkLines)
    }

    /// Parses one line; a refused line is reported at once and counted.
    mutating func add(
        _ line: Substring, number: Int, apps: ImportApps, policy: RefreshPolicy, now: Timestamp,
        random: inout some RandomNumberGenerator, totals: inout ImportTotals
    ) {
        do throws(ImportLineError) {
            guard var record = try ImportLineParser.parse(line, number: number, apps: apps) else { return }
            record.nextRefreshAt = Commands.firstRefresh(of: record, policy: policy, now: now, random: &random)
            records.append(record)
            lines.append(number)
        } catch {
            Console.error("refused \(error)")
            totals.lineErrors += 1
        }
    }

    /// Calls `body` with each line of `data` (split on newline bytes, not on
    /// characters: a million lines split by grapheme would cost seconds), and
    /// `whenFull` after each line for which `body` says the chunk is full.
    /// The bytes are read in place and searched with `memchr`: indexing
    /// `Data` a byte at a time cost half of an import's parsing.
    static func forEachLine(
        in data: Data, _ body: (Substring) -> Bool, whenFull: () async throws -> Void
    ) async throws {
        var offset = 0
        while offset < data.count {
            var full = false
            offset = data.withUnsafeBytes { bytes in
                var start = offset
                while start < bytes.count, !full {
                    let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
                    let end = memchr(rest.baseAddress!, 0x0A, rest.count).map { bytes.baseAddress!.distance(to: $0) }
                    let line = String(
                        decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<(end ?? bytes.count)]), as: UTF8.self)
                    start = end.map { $0 + 1 } ?? bytes.count
                    full = body(line[...])
                }
                return start
            }
            if full { try await whenFull() }
        }
    }
}

/// What an import did, summed over its chunks, and its closing lines.
struct ImportTotals {
    var imported = 0
    var alreadyManaged = 0
    var refused = 0
    var lineErrors = 0
    /// How a refused record names its place ("line 12: ").
    var describe: (Int) -> String = { "line \($0): " }

    init(lineErrors: Int = 0, describe: @escaping (Int) -> String = { "line \($0): " }) {
        self.lineErrors = lineErrors
        self.describe = describe
    }

    /// Adds a stored chunk's summary; `lines` gives each record's place.
    mutating func add(_ summary: ImportSummary, lines: [Int]) {
        imported += summary.imported
        alreadyManaged += summary.alreadyManaged.count
        refused += summary.refused.count
        for record in summary.refused {
            Console.error("refused \(describe(lines[record.index]))seller \(record.sellerID): \(record.problem)")
        }
    }

    /// Prints the summary line; failure when anything was refused.
    func report() -> CommandOutcome {
        let refusedCount = lineErrors + refused
        Console.out(
            "imported \(imported) seller\(imported == 1 ? "" : "s")"
                + (alreadyManaged > 0
                    ? ", \(alreadyManaged) already managed, skipped; use --replace to overwrite them" : "")
                + (refusedCount > 0 ? ", refused \(refusedCount)" : ""))
        return refusedCount > 0 ? .failure : .success
    }
}
