import CSQLite

extension SQLiteConnection {
    /// Copies this connection's `main` database into `destination`'s, page by
    /// page, through SQLite's online backup API: the copy is the database as
    /// of one moment (one read transaction), and writers in other connections
    /// go on meanwhile (WAL readers do not block writers).
    ///
    /// - Throws: ``SQLiteError`` from either connection.
    public func backup(into destination: SQLiteConnection) throws(SQLiteError) {
        let source = try liveHandle()
        let target = try destination.liveHandle()
        guard let backup = sqlite3_backup_init(target, "main", source, "main") else {
            throw SQLiteError(code: sqlite3_extended_errcode(target), connection: target, sql: nil)
        }
        // -1: every page in one step, so the copy is one snapshot.
        let step = sqlite3_backup_step(backup, -1)
        let finish = sqlite3_backup_finish(backup)
        guard step == SQLITE_DONE else {
            throw SQLiteError(
                code: step,
                message: "backup of \(path) to \(destination.path) stopped: \(String(cString: sqlite3_errstr(step)))")
        }
        guard finish == SQLITE_OK else {
            throw SQLiteError(code: finish, connection: target, sql: nil)
        }
    }
}
