extension DatabaseSchema {
    /// The sellers a Lazada account serves, one per country: the same table
    /// in keeper.db (the truth) and tokens.db (copied for readers), so that
    /// rows copy column for column.
    static let venturesTableSQL = """
        CREATE TABLE ventures (
            app TEXT NOT NULL,
            account_id TEXT NOT NULL,
            country TEXT NOT NULL,
            seller_id TEXT NOT NULL,
            user_id TEXT,
            short_code TEXT,
            PRIMARY KEY (app, account_id, country)
        )
        """

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
                    """),
            Migration(
                version: 2,
                sql: """
                    -- Several apps: the same seller id under two apps is two
                    -- rows. The table is rebuilt (a primary key cannot be
                    -- altered) with its columns in the same order and `app` and
                    -- `country` added at the end; rows of a single-app release
                    -- belong to 'default'. Readers that look a seller up by
                    -- `seller_id` alone keep working (an index serves them).
                    CREATE TABLE tokens_by_app (
                        seller_id TEXT NOT NULL,
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
                        updated_at INTEGER NOT NULL,
                        app TEXT NOT NULL DEFAULT 'default',
                        country TEXT,
                        PRIMARY KEY (app, seller_id)
                    );
                    INSERT INTO tokens_by_app (
                        seller_id, user_id, user_nick, account, account_platform, sp, locale, access_token,
                        expire_time, reauth_by, status, status_reason, refreshed_at, updated_at)
                    SELECT seller_id, user_id, user_nick, account, account_platform, sp, locale, access_token,
                        expire_time, reauth_by, status, status_reason, refreshed_at, updated_at
                    FROM tokens;
                    DROP VIEW valid_tokens;
                    DROP TABLE tokens;
                    ALTER TABLE tokens_by_app RENAME TO tokens;
                    CREATE INDEX tokens_by_seller ON tokens (seller_id);
                    CREATE VIEW valid_tokens AS
                        SELECT seller_id, access_token, expire_time, app
                        FROM tokens
                        WHERE status = 'active'
                          AND expire_time > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);

                    -- The sellers a Lazada account serves, one per country; the
                    -- account's row in `tokens` is the one whose seller_id is
                    -- `account_id`.
                    \(venturesTableSQL);
                    CREATE INDEX ventures_by_seller ON ventures (seller_id);

                    -- One row for each seller an account serves: an AliExpress
                    -- seller's own, or one per country of a Lazada account,
                    -- so a reader finds the token by any venture's seller id.
                    -- Two branches of UNION ALL, so that a lookup by seller_id
                    -- seeks an index in each.
                    CREATE VIEW seller_tokens AS
                        SELECT t.app, t.seller_id, t.country, NULL AS short_code, t.access_token, t.expire_time,
                            t.status
                        FROM tokens AS t
                        WHERE NOT EXISTS (
                            SELECT 1 FROM ventures AS v WHERE v.app = t.app AND v.account_id = t.seller_id)
                        UNION ALL
                        SELECT v.app, v.seller_id, v.country, v.short_code, t.access_token, t.expire_time, t.status
                        FROM ventures AS v
                        JOIN tokens AS t ON t.app = v.app AND t.seller_id = v.account_id;
                    """),
        ])
}
