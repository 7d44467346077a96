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
            Migration(
                version: 3,
                sql: """
                    -- Set once a reauth_due event was raised for the account's
                    -- refresh token; cleared when a new token (a new validity) is
                    -- stored. One partial index: a rotation that keeps the
                    -- validity touches no index of it (measured: each extra index
                    -- on this column cost a fifth of the rotation rate).
                    ALTER TABLE accounts ADD COLUMN reauth_warned INTEGER NOT NULL DEFAULT 0;
                    CREATE INDEX accounts_by_reauth ON accounts (refresh_token_valid_time)
                        WHERE status = 'active';

                    -- The outbox: the events that are delivered to the hook and
                    -- the webhook, filled in the transaction that writes the event
                    -- (by the store, not a trigger on events: a trigger there cost
                    -- imports three times their time).
                    -- `payload` is the JSON, rendered once at the first attempt so
                    -- that every channel and every retry sends the same bytes.
                    -- `uid` is the id receivers deduplicate by: random, so that
                    -- events written after a restore from a backup (which reuse
                    -- row ids) are never taken for ones already delivered.
                    CREATE TABLE outbox (
                        event_id INTEGER PRIMARY KEY,
                        uid TEXT NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(16)))),
                        payload TEXT
                    );

                    -- One row per event and channel once the channel has taken it on
                    -- (`taken_at`: the retry window runs from then at the earliest).
                    CREATE TABLE deliveries (
                        event_id INTEGER NOT NULL,
                        channel TEXT NOT NULL,
                        taken_at INTEGER NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at INTEGER NOT NULL,
                        delivered_at INTEGER,
                        abandoned_at INTEGER,
                        last_error TEXT,
                        PRIMARY KEY (event_id, channel)
                    ) WITHOUT ROWID;
                    CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at)
                        WHERE delivered_at IS NULL AND abandoned_at IS NULL;

                    CREATE TRIGGER events_pruned AFTER DELETE ON events
                    BEGIN
                        DELETE FROM outbox WHERE event_id = OLD.id;
                        DELETE FROM deliveries WHERE event_id = OLD.id;
                    END;

                    -- A seller that authorizes again is told about once, whatever
                    -- wrote the new token (add --code, the callback, import).
                    CREATE TRIGGER accounts_reactivated AFTER UPDATE OF status ON accounts
                    WHEN OLD.status = 'reauth_required' AND NEW.status = 'active'
                    BEGIN
                        INSERT INTO events (at, seller_id, kind, detail, request_id)
                        VALUES (NEW.updated_at, NEW.seller_id, 'reactivated',
                                'was ' || coalesce(OLD.status_reason, 'reauth_required'), NEW.last_request_id);
                        -- Inside a trigger, the rowid of the trigger's own insert.
                        INSERT INTO outbox (event_id) VALUES (last_insert_rowid());
                    END;

                    -- Keys of tokenkeeper's own (the callback's state key).
                    CREATE TABLE keys (
                        name TEXT NOT NULL PRIMARY KEY,
                        value TEXT NOT NULL,
                        created_at INTEGER NOT NULL
                    ) WITHOUT ROWID;

                    -- Authorization states already used once, kept until they expire.
                    CREATE TABLE used_states (
                        nonce TEXT NOT NULL PRIMARY KEY,
                        used_at INTEGER NOT NULL,
                        expires_at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    """),
            Migration(
                version: 4,
                sql: """
                    -- The daemon's start reads every active seller's deadline
                    -- (loadSchedule) from this covering index, a sixth of the
                    -- table's bytes: at a million sellers, 0.35 s instead of 1.1 s.
                    -- status comes last: leading, it would draw every query on
                    -- active sellers (the reauth window's) away from its own index.
                    CREATE INDEX accounts_schedule ON accounts (
                        seller_id, refreshable, expire_time, access_lifetime_ms, refreshed_at, next_refresh_at,
                        updated_at, status)
                        WHERE status = 'active';
                    -- Counts by status without reading the table: the active
                    -- from the index above, the others from their own.
                    CREATE INDEX accounts_reauth_required ON accounts (seller_id) WHERE status = 'reauth_required';
                    CREATE INDEX accounts_disabled ON accounts (seller_id) WHERE status = 'disabled';
                    """),
            Migration(
                version: 5,
                sql: """
                    -- A state whose code could not be exchanged is released
                    -- (usable again) rather than forgotten, and counted: after
                    -- a few failed exchanges it stays spent, so that one link
                    -- cannot make the daemon call /auth/token/create forever.
                    ALTER TABLE used_states ADD COLUMN in_use INTEGER NOT NULL DEFAULT 1;
                    ALTER TABLE used_states ADD COLUMN releases INTEGER NOT NULL DEFAULT 0;
                    """),
            Migration(
                version: 6,
                sql: """
                    -- Several apps: an account is keyed by (app, seller_id). A
                    -- primary key cannot be altered in place, so the table is
                    -- rebuilt; the rows a single-app release stored belong to
                    -- 'default'. Its indexes and trigger go with the old table
                    -- and are made again on the new one.
                    CREATE TABLE accounts_by_app (
                        app TEXT NOT NULL DEFAULT 'default'
                            CHECK (length(app) BETWEEN 1 AND 32 AND app NOT GLOB '*[^a-z0-9_-]*'),
                        seller_id TEXT NOT NULL CHECK (seller_id <> ''),
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
                        change_seq INTEGER NOT NULL,
                        answer_lost INTEGER NOT NULL DEFAULT 0,
                        reauth_warned INTEGER NOT NULL DEFAULT 0,
                        -- Lazada's `country` (`cb`: cross-border); NULL for AliExpress.
                        country TEXT,
                        PRIMARY KEY (app, seller_id)
                    ) WITHOUT ROWID;
                    INSERT INTO accounts_by_app (
                        seller_id, refresh_token, access_token, expire_time, access_lifetime_ms,
                        refresh_token_valid_time, refreshable, status, status_reason, next_refresh_at,
                        failed_attempts, last_error, last_request_id, refreshed_at, lease_owner, lease_expires_at,
                        user_id, user_nick, account, account_platform, sp, locale, created_at, updated_at,
                        change_seq, answer_lost, reauth_warned)
                    SELECT seller_id, refresh_token, access_token, expire_time, access_lifetime_ms,
                        refresh_token_valid_time, refreshable, status, status_reason, next_refresh_at,
                        failed_attempts, last_error, last_request_id, refreshed_at, lease_owner, lease_expires_at,
                        user_id, user_nick, account, account_platform, sp, locale, created_at, updated_at,
                        change_seq, answer_lost, reauth_warned
                    FROM accounts;
                    DROP TABLE accounts;
                    ALTER TABLE accounts_by_app RENAME TO accounts;
                    CREATE INDEX accounts_by_change ON accounts (change_seq);
                    CREATE INDEX accounts_by_seller ON accounts (seller_id);
                    CREATE INDEX accounts_by_reauth ON accounts (refresh_token_valid_time)
                        WHERE status = 'active';
                    CREATE INDEX accounts_schedule ON accounts (
                        app, seller_id, refreshable, expire_time, access_lifetime_ms, refreshed_at, next_refresh_at,
                        updated_at, status)
                        WHERE status = 'active';
                    CREATE INDEX accounts_reauth_required ON accounts (app, seller_id)
                        WHERE status = 'reauth_required';
                    CREATE INDEX accounts_disabled ON accounts (app, seller_id) WHERE status = 'disabled';

                    CREATE TABLE removed_by_app (
                        app TEXT NOT NULL DEFAULT 'default',
                        seller_id TEXT NOT NULL,
                        removed_at INTEGER NOT NULL,
                        change_seq INTEGER NOT NULL,
                        PRIMARY KEY (app, seller_id)
                    ) WITHOUT ROWID;
                    INSERT INTO removed_by_app (seller_id, removed_at, change_seq)
                        SELECT seller_id, removed_at, change_seq FROM removed_accounts;
                    DROP TABLE removed_accounts;
                    ALTER TABLE removed_by_app RENAME TO removed_accounts;
                    CREATE INDEX removed_accounts_by_change ON removed_accounts (change_seq);

                    -- Events of a single-app release that name a seller belong
                    -- to 'default': a default of the column, so that no row of
                    -- the (large) log is rewritten; every event written from
                    -- now on names its app, or NULL for the daemon's own. The
                    -- old ones of the daemon's own (no seller, few, found by
                    -- the seller index) are set to NULL.
                    ALTER TABLE events ADD COLUMN app TEXT DEFAULT 'default';
                    DROP TRIGGER events_are_append_only;
                    UPDATE events SET app = NULL WHERE seller_id IS NULL;
                    CREATE TRIGGER events_are_append_only BEFORE UPDATE ON events
                    BEGIN
                        SELECT RAISE(ABORT, 'events are append-only');
                    END;
                    CREATE INDEX events_by_account ON events (app, seller_id, id);

                    -- The sellers a Lazada account serves, one per country
                    -- (`country_user_info`), replaced by every answer that
                    -- lists them. tokens.db has the same table for readers.
                    \(venturesTableSQL) WITHOUT ROWID;
                    -- An authorization that lists an account's sellers in
                    -- another order finds the account by any of them.
                    CREATE INDEX ventures_by_seller ON ventures (app, seller_id);

                    CREATE TRIGGER accounts_reactivated AFTER UPDATE OF status ON accounts
                    WHEN OLD.status = 'reauth_required' AND NEW.status = 'active'
                    BEGIN
                        INSERT INTO events (at, app, seller_id, kind, detail, request_id)
                        VALUES (NEW.updated_at, NEW.app, NEW.seller_id, 'reactivated',
                                'was ' || coalesce(OLD.status_reason, 'reauth_required'), NEW.last_request_id);
                        INSERT INTO outbox (event_id) VALUES (last_insert_rowid());
                    END;
                    """),
            Migration(
                version: 7,
                sql: """
                    -- The same table and rules, with each CHECK written as
                    -- comparisons: SQLite evaluates `status IN ('active', ...)`
                    -- by building a temporary index of the list for every row
                    -- written (measured: 1.9 µs a row, 45 % of an upsert of a
                    -- table like this one), which every import line and every
                    -- refresh that sets the status paid. A CHECK cannot be
                    -- altered in place, so the table is rebuilt; its indexes
                    -- and trigger go with the old one and are made again.
                    CREATE TABLE accounts_checked (
                        app TEXT NOT NULL DEFAULT 'default'
                            CHECK (length(app) BETWEEN 1 AND 32 AND app NOT GLOB '*[^a-z0-9_-]*'),
                        seller_id TEXT NOT NULL CHECK (seller_id <> ''),
                        refresh_token TEXT NOT NULL CHECK (refresh_token <> ''),
                        access_token TEXT,
                        expire_time INTEGER,
                        access_lifetime_ms INTEGER,
                        refresh_token_valid_time INTEGER,
                        refreshable INTEGER NOT NULL DEFAULT 1 CHECK (refreshable = 0 OR refreshable = 1),
                        status TEXT NOT NULL
                            CHECK (status = 'active' OR status = 'reauth_required' OR status = 'disabled'),
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
                        change_seq INTEGER NOT NULL,
                        answer_lost INTEGER NOT NULL DEFAULT 0,
                        reauth_warned INTEGER NOT NULL DEFAULT 0,
                        -- Lazada's `country` (`cb`: cross-border); NULL for AliExpress.
                        country TEXT,
                        PRIMARY KEY (app, seller_id)
                    ) WITHOUT ROWID;
                    INSERT INTO accounts_checked (
                        app, seller_id, refresh_token, access_token, expire_time, access_lifetime_ms, refresh_token_valid_time,
                        refreshable, status, status_reason, next_refresh_at, failed_attempts, last_error, last_request_id,
                        refreshed_at, lease_owner, lease_expires_at, user_id, user_nick, account, account_platform, sp,
                        locale, created_at, updated_at, change_seq, answer_lost, reauth_warned, country)
                    SELECT app, seller_id, refresh_token, access_token, expire_time, access_lifetime_ms, refresh_token_valid_time,
                        refreshable, status, status_reason, next_refresh_at, failed_attempts, last_error, last_request_id,
                        refreshed_at, lease_owner, lease_expires_at, user_id, user_nick, account, account_platform, sp,
                        locale, created_at, updated_at, change_seq, answer_lost, reauth_warned, country
                    FROM accounts ORDER BY app, seller_id;
                    DROP TABLE accounts;
                    ALTER TABLE accounts_checked RENAME TO accounts;
                    CREATE INDEX accounts_by_change ON accounts (change_seq);
                    CREATE INDEX accounts_by_seller ON accounts (seller_id);
                    CREATE INDEX accounts_by_reauth ON accounts (refresh_token_valid_time)
                        WHERE status = 'active';
                    CREATE INDEX accounts_schedule ON accounts (
                        app, seller_id, refreshable, expire_time, access_lifetime_ms, refreshed_at, next_refresh_at,
                        updated_at, status)
                        WHERE status = 'active';
                    CREATE INDEX accounts_reauth_required ON accounts (app, seller_id)
                        WHERE status = 'reauth_required';
                    CREATE INDEX accounts_disabled ON accounts (app, seller_id) WHERE status = 'disabled';
                    CREATE TRIGGER accounts_reactivated AFTER UPDATE OF status ON accounts
                    WHEN OLD.status = 'reauth_required' AND NEW.status = 'active'
                    BEGIN
                        INSERT INTO events (at, app, seller_id, kind, detail, request_id)
                        VALUES (NEW.updated_at, NEW.app, NEW.seller_id, 'reactivated',
                                'was ' || coalesce(OLD.status_reason, 'reauth_required'), NEW.last_request_id);
                        INSERT INTO outbox (event_id) VALUES (last_insert_rowid());
                    END;
                    """),
        ])
}
