import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// A program of another Unix user, in the storage directory's group, with no
/// write permission anywhere in it, reads tokens.db with `mode=ro` while the
/// store has it open and after the store closed it (docs/DATABASE.md).
///
/// These tests switch user with `setpriv`, so they need root (CI runs as
/// root) and the tools: `setpriv` (util-linux), `sqlite3` (Debian package
/// `sqlite3`) and `python3`. Without them they are skipped, saying why.
@Suite struct ReadOnlyReaderTests {
    static let setpriv = "/usr/bin/setpriv"
    static let sqlite3 = "/usr/bin/sqlite3"
    static let python3 = "/usr/bin/python3"
    static let readerUser: uid_t = 65_534  // nobody
    static let readersGroup: gid_t = 60_123
    static let outsiderGroup: gid_t = 60_124

    static var canSwitchUser: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: setpriv)
    }
    static var hasSQLite3: Bool { FileManager.default.isExecutableFile(atPath: sqlite3) }
    static var hasPython3: Bool { FileManager.default.isExecutableFile(atPath: python3) }

    /// The storage directory as systemd lays it out: 0750, readers' group.
    private func readersDirectory() throws -> ScratchDirectory {
        let scratch = try ScratchDirectory(mode: 0o750)
        guard chown(scratch.path, uid_t.max, Self.readersGroup) == 0 else { throw POSIXError(.EPERM) }
        return scratch
    }

    @Test(
        .enabled(if: canSwitchUser, "needs root and setpriv to run a reader as another user"),
        .enabled(if: hasSQLite3, "needs the sqlite3 command (apt-get install sqlite3)"))
    func sqlite3ReaderInTheGroupReadsWhileOpenAndAfterClose() async throws {
        let scratch = try readersDirectory()
        let store = try await scratch.open()
        let access = Tokens.access()
        let refresh = Tokens.refresh()
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", access: access, refresh: refresh), nextRefreshAt: Moments.now,
            now: Moments.now)

        var answer = try sqlite3Reader(scratch, group: Self.readersGroup)
        #expect(answer.status == 0, "reader failed while the store is open: \(answer.error)")
        #expect(Secret(answer.output) == access)

        // A change made while the reader's files are in place is seen.
        let newAccess = Tokens.access()
        _ = try await store.commitRotation(
            account: "1001", sent: refresh, grant: makeGrant(seller: "1001", access: newAccess),
            nextRefreshAt: Moments.now, now: Moments.now)
        answer = try sqlite3Reader(scratch, group: Self.readersGroup)
        #expect(answer.status == 0, "reader failed after a write: \(answer.error)")
        #expect(Secret(answer.output) == newAccess)

        try await store.close()
        answer = try sqlite3Reader(scratch, group: Self.readersGroup)
        #expect(answer.status == 0, "reader failed after the store closed: \(answer.error)")
        #expect(Secret(answer.output) == newAccess)
        #expect(scratch.exists("tokens.db-wal") && scratch.exists("tokens.db-shm"))
    }

    @Test(
        .enabled(if: canSwitchUser, "needs root and setpriv to run a reader as another user"),
        .enabled(if: hasSQLite3, "needs the sqlite3 command (apt-get install sqlite3)"))
    func readerOutsideTheGroupIsDenied() async throws {
        let scratch = try readersDirectory()
        let store = try await scratch.open()
        _ = try await store.enroll(grant: makeGrant(seller: "1001"), nextRefreshAt: Moments.now, now: Moments.now)
        let answer = try sqlite3Reader(scratch, group: Self.outsiderGroup)
        #expect(answer.status != 0)
        #expect(answer.output.isEmpty)
        // Denied by the file modes, not failing for some other reason.
        #expect(
            answer.error.contains("unable to open") || answer.error.contains("Permission denied")
                || answer.error.contains("authorization denied"), "\(answer.error)")
        try await store.close()
    }

    @Test(
        .enabled(if: canSwitchUser, "needs root and setpriv to run a reader as another user"),
        .enabled(if: hasPython3, "needs python3"))
    func pythonReaderKeepsReadingWhileTheStoreRotatesTokens() async throws {
        let scratch = try readersDirectory()
        let store = try await scratch.open()
        var refresh = Tokens.refresh()
        _ = try await store.enroll(
            grant: makeGrant(seller: "1001", refresh: refresh), nextRefreshAt: Moments.now, now: Moments.now)

        // The reader polls as a reader would: data_version on one connection,
        // plus fresh connections, retrying SQLITE_READONLY_RECOVERY as the
        // contract says, counting failures. It stops when told (by a file we
        // create) or after 2000 rounds.
        let stopFile = scratch.file("stop-reader")
        let script = """
            import os, sqlite3, sys, time
            path, stop = sys.argv[1], sys.argv[2]
            uri = 'file:' + path + '?mode=ro'
            retried = {}

            def query(connection, sql, params=()):
                # As docs/DATABASE.md tells readers: a read-only reader can lose a
                # race with a commit (SQLITE_READONLY_RECOVERY, 264); retry it.
                for attempt in range(5):
                    try:
                        return connection.execute(sql, params).fetchall()
                    except sqlite3.OperationalError as error:
                        code = getattr(error, 'sqlite_errorcode', None)
                        if code != 264 or attempt == 4:
                            raise
                        retried[code] = retried.get(code, 0) + 1
                        time.sleep(0.005)

            held = sqlite3.connect(uri, uri=True, timeout=5)
            reads = failures = 0
            errors = set()
            for _ in range(2000):
                try:
                    query(held, 'PRAGMA data_version')
                    rows = query(held, 'SELECT access_token FROM valid_tokens WHERE seller_id = ?', ('1001',))
                    fresh = sqlite3.connect(uri, uri=True, timeout=5)
                    again = query(fresh, 'SELECT count(*) FROM valid_tokens')
                    fresh.close()
                    if len(rows) != 1 or again[0][0] != 1:
                        failures += 1
                    reads += 1
                except sqlite3.Error as error:
                    failures += 1
                    errors.add('%s (%s)' % (error, getattr(error, 'sqlite_errorcode', '?')))
                if os.path.exists(stop) and reads >= 50:
                    break
            print(reads, failures, '|'.join(sorted(errors)), 'retried', retried)
            """
        let reader = try startReader(
            [Self.python3, "-c", script, scratch.tokensPath, stopFile], group: Self.readersGroup)
        for _ in 0..<60 {
            let next = Tokens.refresh()
            #expect(
                try await store.commitRotation(
                    account: "1001", sent: refresh, grant: makeGrant(seller: "1001", refresh: next),
                    nextRefreshAt: Moments.now, now: Moments.now))
            refresh = next
        }
        _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
        let answer = reader.wait()
        // Counts only (no token): how often the reader had to retry.
        print("python reader while writing: \(answer.output)")
        let fields = answer.output.split(separator: " ", maxSplits: 2).map(String.init)
        #expect(answer.status == 0, "python reader failed: \(answer.error)")
        #expect(fields.count >= 2)
        #expect(Int(fields.first ?? "") ?? 0 >= 50, "reads: \(answer.output)")
        #expect(fields.dropFirst().first == "0", "failed reads: \(answer.output)")
        try await store.close()

        let after = try startReader(
            [Self.python3, "-c", script, scratch.tokensPath, stopFile], group: Self.readersGroup
        ).wait()
        #expect(after.status == 0, "python reader failed after close: \(after.error)")
        #expect(after.output.split(separator: " ").dropFirst().first == "0", "after close: \(after.output)")
    }

    // MARK: - Running a reader as another user

    struct Answer {
        var status: Int32
        /// Standard output, trimmed. May hold a token: compare it as a ``Secret``.
        var output: String
        var error: String
    }

    private func sqlite3Reader(_ scratch: ScratchDirectory, group: gid_t) throws -> Answer {
        try startReader(
            [
                Self.sqlite3, "-readonly", "-batch", "-noheader", "file:\(scratch.tokensPath)?mode=ro",
                "SELECT access_token FROM valid_tokens WHERE seller_id = '1001';",
            ], group: group
        ).wait()
    }

    final class RunningReader {
        let process: Process
        let output = Pipe()
        let error = Pipe()

        init(process: Process) {
            self.process = process
        }

        func wait() -> Answer {
            let out = output.fileHandleForReading.readDataToEndOfFile()
            let err = error.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Answer(
                status: process.terminationStatus,
                output: String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
                error: String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    private func startReader(_ command: [String], group: gid_t) throws -> RunningReader {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.setpriv)
        process.arguments =
            ["--reuid=\(Self.readerUser)", "--regid=\(group)", "--clear-groups", "--"] + command
        // No HOME: the reader must not depend on root's dotfiles.
        process.environment = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"]
        let reader = RunningReader(process: process)
        process.standardOutput = reader.output
        process.standardError = reader.error
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return reader
    }
}
