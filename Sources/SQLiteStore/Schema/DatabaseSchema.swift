/// One step of a schema: the SQL that takes a database from `version - 1`
/// to `version`.
struct Migration: Sendable {
    let version: Int64
    let sql: String
}

/// The schema of one of our database files, as an ordered list of migrations
/// keyed on `PRAGMA user_version`, and the `application_id` that marks the
/// file as ours.
struct DatabaseSchema: Sendable {
    /// For messages: `keeper.db`, `tokens.db`.
    let fileName: String
    let applicationID: Int64
    let migrations: [Migration]

    var latestVersion: Int64 { migrations.last?.version ?? 0 }

    /// Checks, without writing anything, that the database at `connection`
    /// is one this binary may open: an SQLite database, ours or empty, and not
    /// newer than we know. Returns its version.
    ///
    /// This must run before anything that could write (`journal_mode`,
    /// migrations): a refused file is left exactly as it was.
    func checkCompatibility(of connection: SQLiteConnection) throws -> Int64 {
        let version: Int64
        let applicationID: Int64
        let objectCount: Int64
        do {
            // One statement, so one snapshot: another process may be
            // committing the first migration right now.
            let statement = try connection.prepare(
                """
                SELECT (SELECT user_version FROM pragma_user_version),
                       (SELECT application_id FROM pragma_application_id),
                       (SELECT count(*) FROM sqlite_master)
                """)
            defer { statement.finalize() }
            (version, applicationID, objectCount) =
                try statement.firstRow { ($0.int64(0), $0.int64(1), $0.int64(2)) } ?? (0, 0, 0)
        } catch let error as SQLiteError where error.isNotADatabase {
            throw SQLiteStoreError.notADatabase(path: connection.path, detail: "SQLite: \(error.message)")
        }
        if applicationID != 0 && applicationID != self.applicationID {
            throw SQLiteStoreError.foreignDatabase(
                path: connection.path,
                detail: "application_id \(applicationID), expected \(self.applicationID) for \(fileName)")
        }
        if applicationID == 0 && objectCount > 0 {
            throw SQLiteStoreError.foreignDatabase(
                path: connection.path, detail: "it already holds \(objectCount) tables or indexes of another schema")
        }
        if version > latestVersion {
            throw SQLiteStoreError.schemaTooNew(
                fileName: fileName, path: connection.path, found: version, known: latestVersion)
        }
        return version
    }

    /// Applies the migrations the database has not had yet, in order, each
    /// in its own `BEGIN IMMEDIATE` transaction together with its
    /// `user_version`. The version is read again inside the transaction, so
    /// two processes opening a fresh directory at once apply each step once.
    func migrate(_ connection: SQLiteConnection) throws {
        // Up to date: no write lock taken (every CLI command opens the store).
        guard try connection.userVersion() < latestVersion else { return }
        for migration in migrations {
            try connection.transaction(.immediate) {
                let current = try connection.userVersion()
                if current > latestVersion {
                    throw SQLiteStoreError.schemaTooNew(
                        fileName: fileName, path: connection.path, found: current, known: latestVersion)
                }
                guard current < migration.version else { return }
                guard current == migration.version - 1 else {
                    throw SQLiteStoreError.foreignDatabase(
                        path: connection.path,
                        detail: "schema version \(current) has no migration to \(migration.version)")
                }
                try connection.execute(migration.sql)
                if migration.version == 1 {
                    try connection.setPragma("application_id", to: .integer(applicationID))
                }
                try connection.setUserVersion(migration.version)
            }
        }
    }
}
