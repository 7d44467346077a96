extension DatabaseSchema {
    /// `tokens.db`: the readers' contract (docs/DATABASE.md). Every migration
    /// after the first must be additive (new columns, tables or views); a
    /// column or view readers use is never renamed, retyped or dropped.
    ///
    /// Readers may run an older SQLite than ours, so the schema uses nothing
    /// newer than SQLite 3.8 (no `unixepoch()`, no `STRICT`, no generated
    /// columns).
    static let tokens = DatabaseSchema(
        fileName: "tokens.db",
        applicationID: 0x746B_746B,  // "tktk"
        migrations: [
            Migration(
                version: 1,
                sql: """
                    CREATE TABLE tokens (
                        seller_id TEXT NOT NULL PRIMARY KEY,
                        user_id TEXT,
                        user_nick TEXT,
                        account TEXT,
                        account_platform TEXT,
                        sp TEXT,
                        locale TEXT,
                        access_token TEXT NOT NULL,
                        expire_time INTEGER NOT NULL,
                        reauth_by INTEGER,
                        status TEXT NOT NULL,
                        status_reason TEXT,
                        refreshed_at INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL
                    );
                    -- 'now' in epoch milliseconds; julianday keeps the milliseconds
                    -- that strftime('%s') would drop.
                    CREATE VIEW valid_tokens AS
                        SELECT seller_id, access_token, expire_time
                        FROM tokens
                        WHERE status = 'active'
                          AND expire_time > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
                    """)
        ])
}
