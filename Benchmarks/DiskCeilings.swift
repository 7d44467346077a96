import Foundation
import SQLiteStore
import TokenKeeperCore

/// What the disk allows a durable SQLite writer, measured with a WAL database
/// at `synchronous=FULL` (as keeper.db) beside the benchmark's storage: one
/// fsync per commit bounds rotations per second unless commits are grouped.
struct DiskCeilings {
    /// Transactions of one row each, committed per second.
    var singleRowCommitsPerSecond: Double
    /// Rows per second in transactions of ``rowsPerGroup`` rows.
    var groupedRowsPerSecond: Double

    static let rowsPerGroup = 20
    /// Each figure commits for this long or this many times, whichever comes first.
    static let duration = Duration.seconds(2)
    static let maxCommits = 5_000

    var figures: [Figure] {
        [
            Figure(
                name: "disk: single-row commits", value: singleRowCommitsPerSecond, unit: "/s",
                detail: "(one INSERT per durable transaction)"),
            Figure(
                name: "disk: rows in \(Self.rowsPerGroup)-row transactions", value: groupedRowsPerSecond, unit: "/s"),
        ]
    }

    static func measure(in directory: String) throws -> DiskCeilings {
        let path = directory + "/ceilings.db"
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        let connection = try SQLiteConnection(path: path)
        try connection.setJournalMode("wal")
        try connection.setSynchronous(.full)
        try connection.execute(
            "CREATE TABLE rotations (seller_id TEXT PRIMARY KEY, access_token TEXT, expire_time INTEGER)")
        var nextRow = 0
        let single = try commitRate(connection, rowsPerTransaction: 1, nextRow: &nextRow)
        let grouped = try commitRate(connection, rowsPerTransaction: rowsPerGroup, nextRow: &nextRow)
        try connection.close()
        return DiskCeilings(singleRowCommitsPerSecond: single, groupedRowsPerSecond: grouped * Double(rowsPerGroup))
    }

    /// Transactions per second, each inserting `rowsPerTransaction` token-sized rows.
    private static func commitRate(_ connection: SQLiteConnection, rowsPerTransaction: Int, nextRow: inout Int)
        throws -> Double
    {
        let token = String(repeating: "5", count: 60)
        let started = ContinuousClock.now
        var commits = 0
        while commits < maxCommits, ContinuousClock.now - started < duration {
            try connection.transaction {
                for _ in 0..<rowsPerTransaction {
                    try connection.execute(
                        "INSERT INTO rotations VALUES (?, ?, ?)", [String(nextRow), token, Int64(nextRow)])
                    nextRow += 1
                }
            }
            commits += 1
        }
        return Double(commits) / (ContinuousClock.now - started).seconds
    }
}
