import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

@Suite struct MigrationTests {
    @Test func freshDirectoryGetsBothSchemasAtTheLatestVersion() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        try await store.close()
        for (name, schema) in [("keeper.db", DatabaseSchema.keeper), ("tokens.db", DatabaseSchema.tokens)] {
            let connection = try SQLiteConnection(path: scratch.file(name), flags: [.readOnly])
            #expect(try connection.userVersion() == schema.latestVersion)
            #expect(try connection.applicationID() == schema.applicationID)
            #expect(try connection.pragma("journal_mode") == .text("wal"))
        }
    }

    @Test func reopeningKeepsDataAndVersion() async throws {
        let scratch = try ScratchDirectory()
        var store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        try await store.close()
        store = try await scratch.open()
        #expect(try await store.account(sellerID: "1001") != nil)
        try await store.close()
        let connection = try SQLiteConnection(path: scratch.keeperPath, flags: [.readOnly])
        #expect(try connection.userVersion() == DatabaseSchema.keeper.latestVersion)
    }

    @Test func twoProcessesOpeningAFreshDirectoryAtOnceBothSucceed() async throws {
        let scratch = try ScratchDirectory()
        async let first = scratch.open()
        async let second = scratch.open()
        let (a, b) = try await (first, second)
        _ = try await a.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        #expect(try await b.account(sellerID: "1001") != nil)
        try await a.close()
        try await b.close()
    }

    @Test(arguments: ["keeper.db", "tokens.db"])
    func newerSchemaIsRefusedAndLeftUntouched(fileName: String) async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        try await store.close()
        do {
            let connection = try SQLiteConnection(path: scratch.file(fileName))
            try connection.setUserVersion(99)
            try connection.close()
        }
        let before = snapshot(scratch, fileName)

        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        #expect(
            error.description
                == "\(fileName) at \(scratch.file(fileName)) has schema version 99 "
                + "but this tokenkeeper knows up to \(fileName == "keeper.db" ? 5 : 1); upgrade tokenkeeper"
        )
        #expect(snapshot(scratch, fileName) == before)
    }

    // tokens.db is derived: a damaged one is moved aside and rebuilt
    // (HardeningStoreTests), never refused.
    @Test(arguments: ["keeper.db"])
    func fileThatIsNotADatabaseIsRefusedAndLeftUntouched(fileName: String) async throws {
        let scratch = try ScratchDirectory()
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
        try scratch.write(fileName, garbage)
        chmod(scratch.file(fileName), 0o644)
        let listing = scratch.listing()

        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        guard case .notADatabase(let path, _) = error else {
            Issue.record("expected notADatabase, got \(error)")
            return
        }
        #expect(path == scratch.file(fileName))
        #expect(error.description.contains(scratch.file(fileName)))
        #expect(scratch.bytes(fileName) == garbage)
        #expect(scratch.mode(fileName) == 0o644)
        // keeper.db may have been created before tokens.db was found bad; nothing
        // was created beside the bad file itself (no -wal, -shm or -journal).
        #expect(scratch.listing().filter { $0.hasPrefix(fileName) } == listing.filter { $0.hasPrefix(fileName) })
    }

    @Test func anotherApplicationsDatabaseIsRefused() async throws {
        let scratch = try ScratchDirectory()
        do {
            let connection = try SQLiteConnection(path: scratch.keeperPath)
            try connection.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
            try connection.close()
        }
        let before = scratch.bytes("keeper.db")
        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        guard case .foreignDatabase(let path, _) = error else {
            Issue.record("expected foreignDatabase, got \(error)")
            return
        }
        #expect(path == scratch.keeperPath)
        #expect(scratch.bytes("keeper.db") == before)
    }

    @Test func swappedFilesAreRefused() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        try await store.close()
        try FileManager.default.removeItem(atPath: scratch.keeperPath)
        try FileManager.default.copyItem(atPath: scratch.tokensPath, toPath: scratch.keeperPath)
        let error = try await #require(throws: SQLiteStoreError.self) { try await scratch.open() }
        #expect(error.description.contains("is not a tokenkeeper database"))
    }

    private func snapshot(_ scratch: ScratchDirectory, _ fileName: String) -> [String: Data] {
        var files: [String: Data] = [:]
        for name in scratch.listing() where name.hasPrefix(fileName) {
            files[name] = scratch.bytes(name)
        }
        return files
    }
}
