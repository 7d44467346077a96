import CSQLite
import Foundation
import Testing
import TokenKeeperTesting

@testable import SQLiteStore

@Suite struct SQLiteConnectionTests {
    let scratch: ScratchDirectory
    let connection: SQLiteConnection

    init() throws {
        scratch = try ScratchDirectory()
        connection = try SQLiteConnection(path: scratch.file("wrapper.db"))
        try connection.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, score REAL, flag INTEGER, note TEXT)")
    }

    @Test func aBinderBindsEachValueAsItsOwnTypeAndCountsThem() throws {
        let insert = try connection.prepare("INSERT INTO items (id, name, score, flag, note) VALUES (?, ?, ?, ?, ?)")
        defer { insert.finalize() }
        try insert.run { bind throws(SQLiteError) in
            try bind(Int64(7))
            try bind("seven")
            try bind(7.5)
            try bind(false)
            try bind(String?.none)
        }
        let row = try connection.cachedStatement("SELECT id, name, score, flag, note IS NULL FROM items").firstRow {
            ($0.int64(0), $0.string(1), $0.double(2), $0.bool(3), $0.bool(4))
        }
        let (id, name, score, flag, noteIsNull) = try #require(row)
        #expect(id == 7 && name == "seven" && score == 7.5 && !flag && noteIsNull)

        // One value short: refused before the statement runs, naming the counts.
        let error = #expect(throws: SQLiteError.self) {
            try insert.run { bind throws(SQLiteError) in
                try bind(Int64(8))
                try bind("eight")
                try bind(8.5)
                try bind(true)
            }
        }
        #expect(error?.primaryCode == SQLITE_RANGE)
        #expect(error?.description.contains("4 values bound to 5 parameters") == true)
        #expect(try connection.cachedStatement("SELECT count(*) FROM items").firstRow { $0.int64(0) } == 1)
    }

    @Test func bindsAndReadsEveryType() throws {
        try connection.execute(
            "INSERT INTO items (id, name, score, flag, note) VALUES (?, ?, ?, ?, ?)",
            [Int64.max, "zürich ✓ \u{0}nul", 2.5, true, nil])
        let row = try connection.cachedStatement("SELECT id, name, score, flag, note FROM items").firstRow {
            ($0.int64(0), $0.string(1), $0.double(2), $0.bool(3), $0.optionalString(4), $0.isNull(4))
        }
        let (id, name, score, flag, note, noteIsNull) = try #require(row)
        #expect(id == Int64.max)
        #expect(name == "zürich ✓ \u{0}nul")
        #expect(score == 2.5)
        #expect(flag)
        #expect(note == nil && noteIsNull)
    }

    @Test func emptyStringIsStoredAsTextNotNull() throws {
        try connection.execute("INSERT INTO items (id, name) VALUES (?, ?)", [1, ""])
        let value = try connection.cachedStatement("SELECT name FROM items WHERE id = 1").firstRow { $0.value(0) }
        #expect(value == .text(""))
    }

    @Test func optionalsBindAsNull() throws {
        let missing: Int64? = nil
        let present: String? = "x"
        try connection.execute("INSERT INTO items (id, score, name) VALUES (?, ?, ?)", [2, missing, present])
        let values = try connection.cachedStatement("SELECT score, name FROM items WHERE id = 2").firstRow {
            [$0.value(0), $0.value(1)]
        }
        #expect(values == [.null, .text("x")])
    }

    @Test func errorCarriesExtendedCodeMessageAndSQLButNoBoundValue() throws {
        let secret = "RT-should-never-appear-\(UUID().uuidString)"
        let sql = "INSERT INTO items (id, name) VALUES (?, ?)"
        try connection.execute(sql, [1, secret])
        let error = try #require(throws: SQLiteError.self) {
            try connection.execute(sql, [2, secret])
        }
        #expect(error.code == 2067)  // SQLITE_CONSTRAINT_UNIQUE (a macro Swift cannot import)
        #expect(error.primaryCode == SQLITE_CONSTRAINT)
        #expect(error.sql == sql)
        #expect(error.message.contains("UNIQUE constraint failed: items.name"))
        #expect(!error.description.contains(secret))
        #expect(!"\(error)".contains(secret))
    }

    @Test func invalidSQLIsReportedWithTheSQL() throws {
        let error = try #require(throws: SQLiteError.self) {
            try connection.prepare("SELECT nope FROM items")
        }
        #expect(error.primaryCode == SQLITE_ERROR)
        #expect(error.message.contains("no such column"))
        #expect(error.sql == "SELECT nope FROM items")
    }

    @Test func prepareRefusesSeveralStatements() throws {
        let error = try #require(throws: SQLiteError.self) {
            try connection.prepare("SELECT 1; DELETE FROM items")
        }
        #expect(error.code == SQLITE_MISUSE)
    }

    @Test func wrongNumberOfValuesIsRefused() throws {
        let error = try #require(throws: SQLiteError.self) {
            try connection.execute("INSERT INTO items (id, name) VALUES (?, ?)", [1])
        }
        #expect(error.code == SQLITE_RANGE)
    }

    @Test func transactionCommitsWhenBodyReturns() throws {
        let count = try connection.transaction(.immediate) {
            try connection.execute("INSERT INTO items (id) VALUES (?)", [1])
            try connection.execute("INSERT INTO items (id) VALUES (?)", [2])
            return 2
        }
        #expect(count == 2)
        #expect(try rowCount() == 2)
        #expect(!connection.isInTransaction)
    }

    @Test func transactionRollsBackWhenBodyThrows() throws {
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try connection.transaction(.immediate) {
                try connection.execute("INSERT INTO items (id) VALUES (?)", [1])
                throw Abort()
            }
        }
        #expect(try rowCount() == 0)
        #expect(!connection.isInTransaction)
    }

    @Test func transactionRollsBackWhenAStatementFails() throws {
        try connection.execute("INSERT INTO items (id, name) VALUES (?, ?)", [1, "a"])
        #expect(throws: SQLiteError.self) {
            try connection.transaction(.immediate) {
                try connection.execute("INSERT INTO items (id, name) VALUES (?, ?)", [2, "b"])
                try connection.execute("INSERT INTO items (id, name) VALUES (?, ?)", [3, "a"])
            }
        }
        #expect(try rowCount() == 1)
    }

    @Test func immediateTransactionWaitsForTheWriteLockThenFailsBusy() throws {
        try connection.execute("PRAGMA journal_mode = WAL")
        let other = try SQLiteConnection(path: scratch.file("wrapper.db"))
        try other.setBusyTimeout(.milliseconds(50))
        try connection.execute("BEGIN IMMEDIATE")
        defer { try? connection.execute("ROLLBACK") }
        let error = try #require(throws: SQLiteError.self) {
            try other.transaction(.immediate) {}
        }
        #expect(error.isBusy)
        // Readers are not blocked by the writer in WAL mode.
        #expect(try other.cachedStatement("SELECT count(*) FROM items").firstRow { $0.int64(0) } == 0)
    }

    @Test func pragmaHelpersReadAndWrite() throws {
        #expect(try connection.userVersion() == 0)
        try connection.setUserVersion(7)
        #expect(try connection.userVersion() == 7)
        #expect(try connection.setJournalMode("WAL") == "wal")
        #expect(throws: SQLiteError.self) { try connection.pragma("user_version; DROP TABLE items") }
        #expect(throws: SQLiteError.self) {
            try connection.setPragma("journal_mode", to: .keyword("WAL; DROP TABLE items"))
        }
    }

    @Test func dataVersionMovesOnlyForOtherConnectionsCommits() throws {
        try connection.setJournalMode("WAL")
        let other = try SQLiteConnection(path: scratch.file("wrapper.db"))
        let before = try connection.dataVersion()
        try connection.execute("INSERT INTO items (id) VALUES (?)", [1])
        #expect(try connection.dataVersion() == before)
        try other.execute("INSERT INTO items (id) VALUES (?)", [2])
        #expect(try connection.dataVersion() != before)
    }

    @Test func closedConnectionRefusesWork() throws {
        _ = try connection.cachedStatement("SELECT 1")
        try connection.close()
        #expect(!connection.isOpen)
        let error = try #require(throws: SQLiteError.self) { try connection.execute("SELECT 1") }
        #expect(error.code == SQLITE_MISUSE)
        try connection.close()
    }

    @Test func openingAMissingFileWithoutCreateFails() throws {
        let error = try #require(throws: SQLiteError.self) {
            try SQLiteConnection(path: scratch.file("absent.db"), flags: [.readWrite])
        }
        #expect(error.primaryCode == SQLITE_CANTOPEN)
        #expect(error.message.contains("absent.db"))
        #expect(!scratch.exists("absent.db"))
    }

    private func rowCount() throws -> Int64 {
        try connection.cachedStatement("SELECT count(*) FROM items").firstRow { $0.int64(0) } ?? -1
    }
}
