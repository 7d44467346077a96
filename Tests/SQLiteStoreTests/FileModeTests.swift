import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// The permission model: keeper.db 0600, tokens.db 0640 with the storage
/// directory's group, both with their -wal/-shm files alike.
@Suite struct FileModeTests {
    @Test func filesGetTheirModesAndTokensDatabaseKeepsWalAndShmAfterClose() async throws {
        let scratch = try ScratchDirectory()
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        #expect(scratch.mode("keeper.db") == 0o600)
        #expect(scratch.mode("keeper.db-wal") == 0o600)
        #expect(scratch.mode("keeper.db-shm") == 0o600)
        for name in ["tokens.db", "tokens.db-wal", "tokens.db-shm"] {
            #expect(scratch.mode(name) == 0o640, "\(name)")
        }
        try await store.close()
        // Read-only readers cannot create -wal/-shm: they must outlive the writer.
        for name in ["tokens.db", "tokens.db-wal", "tokens.db-shm"] {
            #expect(scratch.mode(name) == 0o640, "\(name) after close")
        }
    }

    @Test func storageDirectoryIsCreatedWithMode0750() async throws {
        let scratch = try ScratchDirectory()
        let directory = scratch.file("state")
        let store = try await SQLiteAccountStore.open(directory: directory, clock: FixedClock())
        try await store.close()
        var info = stat()
        #expect(stat(directory, &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o750)
    }

    @Test func widerOrWrongModesAreCorrectedAtOpen() async throws {
        let scratch = try ScratchDirectory()
        try await scratch.open().close()
        chmod(scratch.keeperPath, 0o644)
        chmod(scratch.tokensPath, 0o666)
        chmod(scratch.tokensPath + "-shm", 0o600)
        chmod(scratch.tokensPath + "-wal", 0o604)
        let store = try await scratch.open()
        #expect(scratch.mode("keeper.db") == 0o600)
        for name in ["tokens.db", "tokens.db-wal", "tokens.db-shm"] {
            #expect(scratch.mode(name) == 0o640, "\(name)")
        }
        try await store.close()
    }

    @Test(.enabled(if: getuid() == 0, "changing a file's group to one we are not in needs root"))
    func tokensFilesTakeTheStorageDirectorysGroup() async throws {
        let scratch = try ScratchDirectory()
        let readers: gid_t = 60_123
        #expect(chown(scratch.path, uid_t.max, readers) == 0)
        let store = try await scratch.open()
        for name in ["tokens.db", "tokens.db-wal", "tokens.db-shm"] {
            #expect(scratch.group(name) == readers, "\(name)")
        }
        try await store.close()
        // A file that lost its group (restored from a backup) gets it back.
        #expect(chown(scratch.tokensPath, uid_t.max, 0) == 0)
        try await scratch.open().close()
        #expect(scratch.group("tokens.db") == readers)
    }

    @Test func aDirectoryInPlaceOfTheFileIsAClearError() async throws {
        let scratch = try ScratchDirectory()
        try FileManager.default.createDirectory(atPath: scratch.keeperPath, withIntermediateDirectories: false)
        let error = try await #require(throws: (any Error).self) { try await scratch.open() }
        #expect("\(error)".contains(scratch.keeperPath))
    }
}
