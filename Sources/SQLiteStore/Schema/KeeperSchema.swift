extension DatabaseSchema {
    /// `keeper.db`: the daemon's private source of truth. Only tokenkeeper
    /// reads it, so its schema may change in any way a migration can express.
    static let keeper = DatabaseSchema(
        fileName: "keeper.db",
        applicationID: 0x746B_6B70,  // "tkkp"
        migrations: [
            Migration(
                version: 1,
                sql: """
                    CREATE TABLE accounts (
                        seller_id TEXT NOT NULL PRIMARY KEY CHECK (seller_id <> ''),
                        refresh_token TEXT NOT NULL CHECK (refresh_token <> ''),
                        access_token TEXT,
                        expire_time INTEGER,
                        access_lifetime_ms INTEGER,
                        refresh_token_valid_time INTEGER,
                        refreshable INTEGER NOT NULL DEFAULT 1 CHECK (refreshable IN (0, 1)),
                        status TEXT NOT NULL CHECK (status IN ('active', 'reauth_required', 'disabled')),
                        status_reason TEXT,
                        next_refresh_at INTEGER,
                        failed_attempts INTEGER NOT NULL DEFAULT 0,
                        last_error TEXT,
                        last_request_id TEXT,
                        refreshed_at INTEGER,
                        lease_owner TEXT,
                        lease_expires_at INTEGER,
                        user_id TEXT,
                        user_nick TEXT,
                        account TEXT,
                        account_platform TEXT,
                        sp TEXT,
                        locale TEXT,
                        created_at INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL,
                        change_seq INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX accounts_by_change ON accounts (change_seq);

                    -- One row; every write transaction that changes an account
                    -- takes the next number and stamps it on the rows it writes.
                    CREATE TABLE change_counter (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        seq INTEGER NOT NULL
                    );
                    INSERT INTO change_counter (id, seq) VALUES (1, 0);

                    -- Tombstones, so that the change feed reports removals.
                    CREATE TABLE removed_accounts (
                        seller_id TEXT NOT NULL PRIMARY KEY,
                        removed_at INTEGER NOT NULL,
                        change_seq INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX removed_accounts_by_change ON removed_accounts (change_seq);

                    CREATE TABLE events (
                        id INTEGER PRIMARY KEY,
                        at INTEGER NOT NULL,
                        seller_id TEXT,
                        kind TEXT NOT NULL,
                        detail TEXT,
                        request_id TEXT
                    );
                    CREATE INDEX events_by_seller ON events (seller_id, id);
                    CREATE TRIGGER events_are_append_only BEFORE UPDATE ON events
                    BEGIN
                        SELECT RAISE(ABORT, 'events are append-only');
                    END;
                    """),
            Migration(
                version: 2,
                sql: """
                    -- Set when the last call may have reached the gateway and its
                    -- answer was lost (timeout, connection closed): a rejection of
                    -- the same refresh token next is then RotationLost.
                    ALTER TABLE accounts ADD COLUMN answer_lost INTEGER NOT NULL DEFAULT 0;
                    CREATE INDEX events_by_time ON events (at);
                    """),
        ])
}
