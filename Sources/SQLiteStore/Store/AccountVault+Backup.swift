import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension AccountVault {
    /// See ``SQLiteAccountStore/backup(to:)``.
    func backup(to destination: String) throws -> String {
        try ensureOpen()
        // Created here, mode 0600 from the first byte: it holds every refresh token.
        let descriptor = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, Self.keeperMode)
        guard descriptor >= 0 else {
            let reason =
                errno == EEXIST
                ? "exists; choose a new name (a backup never overwrites a file)"
                : "cannot be created: \(String(cString: strerror(errno)))"
            throw SQLiteStoreError.fileProblem(path: destination, problem: reason)
        }
        Glibc.close(descriptor)
        do {
            let copy = try SQLiteConnection(path: destination, flags: [.readWrite, .noMutex, .noFollow])
            defer { try? copy.close() }
            try keeper.backup(into: copy)
            // A standalone file: no -wal beside it to lose when it is copied elsewhere.
            _ = try copy.setJournalMode("DELETE")
            let result = try copy.cachedStatement("PRAGMA integrity_check").rows { $0.string(0) }
            return result.joined(separator: "; ")
        } catch {
            unlink(destination)
            throw error
        }
    }
}
