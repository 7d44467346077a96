import Foundation

/// The PostgreSQL schema, versioned in `schema_migrations`. Each migration is
/// a list of statements run in one transaction; `{S}` stands for the schema.
/// A database whose version is newer than the binary's is refused, as with
/// keeper.db.
///
/// The readers' contract (docs/DATABASE.md, "PostgreSQL") is the views
/// `tokens`, `valid_tokens` and `seller_tokens`, with the same columns and
/// meaning as in tokens.db; the role `tokenkeeper_reader` is granted those
/// three and nothing else. Views run with their owner's rights, so the
/// reader reads no table, and no view shows a refresh token.
enum PostgresSchema {
    struct Migration {
        var version: Int
        var statements: [String]
    }

    static let readerRole = "tokenkeeper_reader"

    static let migrations: [Migration] = [
        Migration(
            version: 1,
            statements: [
                """
                CREATE TABLE {S}.accounts (
                    seller_id text NOT NULL PRIMARY KEY CHECK (seller_id <> ''),
                    refresh_token text NOT NULL CHECK (refresh_token <> ''),
                    access_token text,
                    expire_time bigint,
                    access_lifetime_ms bigint,
                    refresh_token_valid_time bigint,
                    refreshable boolean NOT NULL DEFAULT true,
                    status text NOT NULL CHECK (status IN ('active', 'reauth_required', 'disabled')),
                    status_reason text,
                    next_refresh_at bigint,
                    failed_attempts integer NOT NULL DEFAULT 0,
                    last_error text,
                    last_request_id text,
                    refreshed_at bigint,
                    lease_owner text,
                    lease_expires_at bigint,
                    user_id text,
                    user_nick text,
                    account text,
                    account_platform text,
                    sp text,
                    locale text,
                    answer_lost boolean NOT NULL DEFAULT false,
                    reauth_warned boolean NOT NULL DEFAULT false,
                    created_at bigint NOT NULL,
                    updated_at bigint NOT NULL
                )
                """,
                "CREATE INDEX accounts_by_status ON {S}.accounts (status)",
                """
                CREATE TABLE {S}.events (
                    id bigserial PRIMARY KEY,
                    at bigint NOT NULL,
                    seller_id text,
                    kind text NOT NULL,
                    detail text,
                    request_id text,
                    -- The node (lease owner) that wrote it; NULL for a command.
                    node text
                )
                """,
                "CREATE INDEX events_by_seller ON {S}.events (seller_id, id)",
                "CREATE INDEX events_by_time ON {S}.events (at)",
                // The daemons sharing this schema. A node is live while its
                // heartbeat (the server's clock, so hosts' clocks do not
                // matter) is recent; live nodes divide the sellers and the
                // call rate between them.
                """
                CREATE TABLE {S}.nodes (
                    node text NOT NULL PRIMARY KEY,
                    host text NOT NULL,
                    pid integer NOT NULL,
                    started_at timestamptz NOT NULL DEFAULT now(),
                    heartbeat_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                // Changes that move a seller's deadline are announced on
                // `{S}_changes` with the seller id; bulk writers (import,
                // migrate) set tokenkeeper.bulk and send one '*' instead.
                """
                CREATE FUNCTION {S}.announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF coalesce(current_setting('tokenkeeper.bulk', true), '') <> 'on' THEN
                        PERFORM pg_notify(TG_TABLE_SCHEMA || '_changes',
                            CASE WHEN TG_OP = 'DELETE' THEN OLD.seller_id ELSE NEW.seller_id END);
                    END IF;
                    RETURN NULL;
                END
                $$
                """,
                """
                CREATE TRIGGER accounts_announce_insert_delete AFTER INSERT OR DELETE ON {S}.accounts
                FOR EACH ROW EXECUTE FUNCTION {S}.announce_change()
                """,
                // Not for lease changes: only what moves a deadline.
                """
                CREATE TRIGGER accounts_announce_update AFTER UPDATE ON {S}.accounts
                FOR EACH ROW WHEN (
                    OLD.next_refresh_at IS DISTINCT FROM NEW.next_refresh_at
                    OR OLD.status IS DISTINCT FROM NEW.status
                    OR OLD.refresh_token IS DISTINCT FROM NEW.refresh_token
                    OR OLD.expire_time IS DISTINCT FROM NEW.expire_time
                    OR OLD.refreshable IS DISTINCT FROM NEW.refreshable)
                EXECUTE FUNCTION {S}.announce_change()
                """,
                // The readers' contract: tokens.db's `tokens` table as a view.
                """
                CREATE VIEW {S}.tokens AS
                SELECT seller_id, user_id, user_nick, account, account_platform, sp, locale, access_token, expire_time,
                    CASE WHEN NOT refreshable
                        THEN least(coalesce(refresh_token_valid_time, expire_time), expire_time)
                        ELSE refresh_token_valid_time END AS reauth_by,
                    status, status_reason, coalesce(refreshed_at, updated_at) AS refreshed_at, updated_at
                FROM {S}.accounts
                WHERE access_token IS NOT NULL AND expire_time IS NOT NULL
                """,
                """
                CREATE VIEW {S}.valid_tokens AS
                SELECT seller_id, access_token, expire_time
                FROM {S}.tokens
                WHERE status = 'active'
                  AND expire_time > (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                """,
                "REVOKE ALL ON ALL TABLES IN SCHEMA {S} FROM PUBLIC",
            ]),
        // The operator's loop, as keeper.db's version 3: the outbox the
        // notifier delivers from, delivery state per channel (claimed by one
        // node at a time), the callback's key and used states, and the
        // re-authorization warning. Readers see none of it (the key is a
        // secret): the reader role is granted the two views only.
        Migration(
            version: 2,
            statements: [
                // The warning window's sellers (raiseReauthDue, the fleet's
                // figures, `status`). A rotation keeps the validity, so it
                // stays a HOT update.
                "CREATE INDEX accounts_by_reauth ON {S}.accounts (refresh_token_valid_time) WHERE status = 'active'",
                // A notified event (EventKind.notified; the list is checked
                // by the conformance suite) takes its id under a lock held to
                // the end of its transaction, so that notified events commit
                // in id order: a channel that has taken every event up to id
                // N (enqueueDeliveries) can never see one below N commit
                // later. Without it, bigserial ids are handed out at insert
                // and committed in any order, and an event could slip below a
                // channel's mark and never be delivered. Writers of notified
                // events take it at the end of their statements (after their
                // row locks), and notified events are few: the lock costs
                // little and cannot deadlock with the row locks.
                """
                CREATE FUNCTION {S}.number_notified_event() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_advisory_xact_lock(hashtext(TG_TABLE_SCHEMA || '.outbox'));
                    NEW.id := nextval(pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.events', 'id'));
                    RETURN NEW;
                END
                $$
                """,
                """
                CREATE TRIGGER events_number_notified BEFORE INSERT ON {S}.events
                FOR EACH ROW WHEN (NEW.kind IN ('reauth_due', 'reauth_required', 'reactivated', 'degraded', 'recovered'))
                EXECUTE FUNCTION {S}.number_notified_event()
                """,
                // The outbox: one row per notified event, written by a
                // trigger in the event's own transaction, whichever writer
                // (node, command) wrote it. `uid` is what receivers
                // deduplicate by: random (32 hex digits, as keeper.db's),
                // unique for ever, never a reused id. `payload` is the JSON
                // rendered at the first attempt, so that every channel and
                // every retry sends the same bytes. Pruning an event takes its
                // outbox and delivery rows with it.
                """
                CREATE TABLE {S}.outbox (
                    event_id bigint NOT NULL PRIMARY KEY REFERENCES {S}.events (id) ON DELETE CASCADE,
                    uid text NOT NULL UNIQUE DEFAULT replace(gen_random_uuid()::text, '-', ''),
                    payload text
                )
                """,
                """
                CREATE FUNCTION {S}.queue_notified_event() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO {S}.outbox (event_id) VALUES (NEW.id);
                    RETURN NULL;
                END
                $$
                """,
                """
                CREATE TRIGGER events_queue_notified AFTER INSERT ON {S}.events
                FOR EACH ROW WHEN (NEW.kind IN ('reauth_due', 'reauth_required', 'reactivated', 'degraded', 'recovered'))
                EXECUTE FUNCTION {S}.queue_notified_event()
                """,
                // One row per event and channel once the channel has taken it
                // on (`taken_at`: the retry window runs from then at the
                // earliest). `claimed_by`/`claimed_until`: the node delivering
                // it now (see PostgresAccountStore.dueDeliveries); the claim's
                // end is on PostgreSQL's clock.
                """
                CREATE TABLE {S}.deliveries (
                    event_id bigint NOT NULL REFERENCES {S}.outbox (event_id) ON DELETE CASCADE,
                    channel text NOT NULL,
                    taken_at bigint NOT NULL,
                    attempts integer NOT NULL DEFAULT 0,
                    next_attempt_at bigint NOT NULL,
                    delivered_at bigint,
                    abandoned_at bigint,
                    last_error text,
                    claimed_by text,
                    claimed_until bigint,
                    PRIMARY KEY (event_id, channel)
                )
                """,
                "CREATE INDEX deliveries_by_channel ON {S}.deliveries (channel, event_id)",
                """
                CREATE INDEX deliveries_due ON {S}.deliveries (channel, next_attempt_at)
                WHERE delivered_at IS NULL AND abandoned_at IS NULL
                """,
                // A seller that authorizes again is told about once, whatever
                // wrote the new token (add --code, the callback, import, a
                // rotation committed after it was marked). The node that
                // wrote it, if it says so (tokenkeeper.node, local to the
                // transaction; commitRotation sets it).
                """
                CREATE FUNCTION {S}.note_reactivated() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO {S}.events (at, seller_id, kind, detail, request_id, node)
                    VALUES (NEW.updated_at, NEW.seller_id, 'reactivated',
                        'was ' || coalesce(OLD.status_reason, 'reauth_required'), NEW.last_request_id,
                        nullif(current_setting('tokenkeeper.node', true), ''));
                    RETURN NULL;
                END
                $$
                """,
                """
                CREATE TRIGGER accounts_reactivated AFTER UPDATE OF status ON {S}.accounts
                FOR EACH ROW WHEN (OLD.status = 'reauth_required' AND NEW.status = 'active')
                EXECUTE FUNCTION {S}.note_reactivated()
                """,
                // Keys of tokenkeeper's own (the callback's state key): a secret.
                """
                CREATE TABLE {S}.keys (
                    name text NOT NULL PRIMARY KEY,
                    value text NOT NULL,
                    created_at bigint NOT NULL
                )
                """,
                // Authorization states already used once, kept until they expire.
                """
                CREATE TABLE {S}.used_states (
                    nonce text NOT NULL PRIMARY KEY,
                    used_at bigint NOT NULL,
                    expires_at bigint NOT NULL
                )
                """,
                "CREATE INDEX used_states_by_expiry ON {S}.used_states (expires_at)",
                "REVOKE ALL ON ALL TABLES IN SCHEMA {S} FROM PUBLIC",
                "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {S} FROM PUBLIC",
            ]),
        Migration(
            version: 3,
            statements: [
                // The daemon's sessions end lock waits after a lock timeout
                // (contention, retried). The outbox's numbering lock is held
                // only to the end of a notified event's transaction, and
                // giving up on it would lose the event's write: it is waited
                // for with no lock timeout, for the rest of the transaction
                // (the statement timeout still bounds it).
                """
                CREATE OR REPLACE FUNCTION {S}.number_notified_event() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM set_config('lock_timeout', '0', true);
                    PERFORM pg_advisory_xact_lock(hashtext(TG_TABLE_SCHEMA || '.outbox'));
                    NEW.id := nextval(pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.events', 'id'));
                    RETURN NEW;
                END
                $$
                """
            ]),
        Migration(
            version: 4,
            statements: [
                // A state whose code could not be exchanged is released (usable
                // again) rather than forgotten, and counted: after a few failed
                // exchanges it stays spent, on every node.
                "ALTER TABLE {S}.used_states ADD COLUMN in_use boolean NOT NULL DEFAULT true",
                "ALTER TABLE {S}.used_states ADD COLUMN releases integer NOT NULL DEFAULT 0",
            ]),
        // Several apps in one schema: an account is keyed by (app, seller id).
        // Additive: every row there is belongs to the app `default`, and the
        // readers' views keep their columns (new ones are appended, as
        // CREATE OR REPLACE VIEW allows). A node of the previous version
        // cannot write this schema (its upserts name the old key): every
        // node is upgraded together.
        Migration(
            version: 5,
            statements: [
                // A constant default is stored once, not written into every
                // row; the check reads the table once.
                """
                ALTER TABLE {S}.accounts ADD COLUMN app text NOT NULL DEFAULT 'default'
                    CONSTRAINT accounts_app_name CHECK (app ~ '^[a-z0-9_-]{1,32}$')
                """,
                "ALTER TABLE {S}.accounts DROP CONSTRAINT accounts_pkey",
                "ALTER TABLE {S}.accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY (app, seller_id)",
                // A seller id across apps: the commands given no app, and
                // the readers, who look tokens up by seller id alone.
                "CREATE INDEX accounts_by_seller ON {S}.accounts (seller_id)",
                // Lazada's `country` (`cb` for a cross-border account).
                "ALTER TABLE {S}.accounts ADD COLUMN country text",
                // The events of an account written before belong to
                // `default` (the default stored once, then dropped: a new
                // event always names its app, or none for the daemon's own);
                // the daemon's own events (no seller) to no app. Those are
                // few, and found through the seller index.
                "ALTER TABLE {S}.events ADD COLUMN app text DEFAULT 'default'",
                "ALTER TABLE {S}.events ALTER COLUMN app DROP DEFAULT",
                "UPDATE {S}.events SET app = NULL WHERE seller_id IS NULL",
                // `events_by_seller` stays, for a seller's events across apps.
                "CREATE INDEX events_by_account ON {S}.events (app, seller_id, id)",
                // The sellers a Lazada account serves, one per country
                // (`country_user_info`): the account's token serves each.
                // Replaced whenever an answer lists them, kept when one does
                // not; they go with their account.
                """
                CREATE TABLE {S}.ventures (
                    app text NOT NULL,
                    account_id text NOT NULL,
                    country text NOT NULL,
                    seller_id text NOT NULL CHECK (seller_id <> ''),
                    user_id text,
                    short_code text,
                    PRIMARY KEY (app, account_id, country),
                    FOREIGN KEY (app, account_id) REFERENCES {S}.accounts (app, seller_id) ON DELETE CASCADE
                )
                """,
                "CREATE INDEX ventures_by_seller ON {S}.ventures (seller_id)",
                // Announced as `app:seller_id` (an app name has no ':'; a
                // seller id may).
                """
                CREATE OR REPLACE FUNCTION {S}.announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF coalesce(current_setting('tokenkeeper.bulk', true), '') <> 'on' THEN
                        PERFORM pg_notify(TG_TABLE_SCHEMA || '_changes',
                            CASE WHEN TG_OP = 'DELETE' THEN OLD.app || ':' || OLD.seller_id
                                ELSE NEW.app || ':' || NEW.seller_id END);
                    END IF;
                    RETURN NULL;
                END
                $$
                """,
                """
                CREATE OR REPLACE FUNCTION {S}.note_reactivated() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO {S}.events (at, app, seller_id, kind, detail, request_id, node)
                    VALUES (NEW.updated_at, NEW.app, NEW.seller_id, 'reactivated',
                        'was ' || coalesce(OLD.status_reason, 'reauth_required'), NEW.last_request_id,
                        nullif(current_setting('tokenkeeper.node', true), ''));
                    RETURN NULL;
                END
                $$
                """,
                """
                CREATE OR REPLACE VIEW {S}.tokens AS
                SELECT seller_id, user_id, user_nick, account, account_platform, sp, locale, access_token, expire_time,
                    CASE WHEN NOT refreshable
                        THEN least(coalesce(refresh_token_valid_time, expire_time), expire_time)
                        ELSE refresh_token_valid_time END AS reauth_by,
                    status, status_reason, coalesce(refreshed_at, updated_at) AS refreshed_at, updated_at,
                    app, country
                FROM {S}.accounts
                WHERE access_token IS NOT NULL AND expire_time IS NOT NULL
                """,
                """
                CREATE OR REPLACE VIEW {S}.valid_tokens AS
                SELECT seller_id, access_token, expire_time, app
                FROM {S}.tokens
                WHERE status = 'active'
                  AND expire_time > (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                """,
                // One row per seller an account's token serves: the account's
                // own seller id when it lists no ventures, each venture's
                // otherwise. Two branches, each a plain column, so that a
                // reader's `WHERE seller_id = …` reaches the seller indexes
                // of both tables.
                """
                CREATE VIEW {S}.seller_tokens AS
                SELECT a.app, a.seller_id, a.country, NULL::text AS short_code, a.access_token,
                    a.expire_time, a.status
                FROM {S}.accounts a
                WHERE a.access_token IS NOT NULL AND a.expire_time IS NOT NULL
                  AND NOT EXISTS (
                    SELECT 1 FROM {S}.ventures v WHERE v.app = a.app AND v.account_id = a.seller_id)
                UNION ALL
                SELECT v.app, v.seller_id, v.country, v.short_code, a.access_token, a.expire_time, a.status
                FROM {S}.ventures v
                JOIN {S}.accounts a ON a.app = v.app AND a.seller_id = v.account_id
                WHERE a.access_token IS NOT NULL AND a.expire_time IS NOT NULL
                """,
                "REVOKE ALL ON ALL TABLES IN SCHEMA {S} FROM PUBLIC",
                // Readers set up by `postgres init` before this version read
                // the new view too, with no step of the operator's.
                """
                DO $$
                BEGIN
                    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tokenkeeper_reader') THEN
                        EXECUTE format('GRANT SELECT ON %I.seller_tokens TO tokenkeeper_reader', '{SCHEMA_NAME}');
                    END IF;
                END
                $$
                """,
            ]),
    ]

    static var latestVersion: Int { migrations.map(\.version).max() ?? 0 }

    static func sql(_ statement: String, schema: String) -> String {
        statement.replacingOccurrences(of: "{S}", with: quoted(schema))
            // The name as a string literal's content, for format('%I').
            .replacingOccurrences(of: "{SCHEMA_NAME}", with: schema.replacingOccurrences(of: "'", with: "''"))
    }

    /// A double-quoted identifier (the schema is checked to be plain, this is
    /// belt and braces).
    static func quoted(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// What `tokenkeeper postgres init` runs (and docs/DATABASE.md shows):
    /// the reader role, allowed into the schema and to the readers' views only.
    static func readerGrants(schema: String) -> [String] {
        [
            "GRANT USAGE ON SCHEMA {S} TO \(readerRole)",
            "REVOKE ALL ON ALL TABLES IN SCHEMA {S} FROM \(readerRole)",
            "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {S} FROM \(readerRole)",
            "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {S} FROM \(readerRole)",
            "GRANT SELECT ON {S}.tokens, {S}.valid_tokens, {S}.seller_tokens TO \(readerRole)",
        ].map { sql($0, schema: schema) }
    }
}
