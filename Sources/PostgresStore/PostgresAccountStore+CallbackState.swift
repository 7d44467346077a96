import PostgresNIO
public import TokenKeeperCore

/// What the callback listener keeps in the schema
/// (``TokenKeeperCore/CallbackStateStore``), so that any node can check a
/// link another node signed: the state key and the states already used.
extension PostgresAccountStore {
    /// The named key, created from `make()` on first use. Two nodes creating
    /// it at the same moment: the first one stored wins for both (the
    /// second's insert does nothing, and it reads the first's).
    public func key(named name: String, now: Timestamp, make: @Sendable () -> String) async throws -> String {
        let select: PostgresQuery = "SELECT value FROM \(unescaped: s).keys WHERE name = \(name)"
        if let existing = try await run(select).first?.first {
            return try existing.decode(String.self)
        }
        _ = try await run(
            """
            INSERT INTO \(unescaped: s).keys (name, value, created_at)
            VALUES (\(name), \(make()), \(now.millisecondsSince1970))
            ON CONFLICT (name) DO NOTHING
            """)
        guard let stored = try await run(select).first?.first else {
            throw PostgresStoreError.server(sqlState: "02000", message: "the key \(name) was not stored")
        }
        return try stored.decode(String.self)
    }

    /// Records a state's nonce as used; false if it already is (two nodes
    /// at once: one of them). A released state may be used again. Forgets
    /// nonces whose states have expired first, as keeper.db does (such
    /// states are refused as expired).
    public func consumeState(nonce: String, expiresAt: Timestamp, now: Timestamp) async throws -> Bool {
        _ = try await run("DELETE FROM \(unescaped: s).used_states WHERE expires_at < \(now.millisecondsSince1970)")
        let stored = try await run(
            """
            INSERT INTO \(unescaped: s).used_states (nonce, used_at, expires_at)
            VALUES (\(nonce), \(now.millisecondsSince1970), \(expiresAt.millisecondsSince1970))
            ON CONFLICT (nonce) DO UPDATE SET in_use = true, used_at = excluded.used_at
                WHERE NOT \(unescaped: s).used_states.in_use
            RETURNING nonce
            """)
        return !stored.isEmpty
    }

    /// Makes a consumed state usable again, unless it was released
    /// `maxReleases` times already (it then stays spent); true when released.
    public func releaseState(nonce: String, maxReleases: Int) async throws -> Bool {
        let released = try await run(
            """
            UPDATE \(unescaped: s).used_states SET in_use = false, releases = releases + 1
            WHERE nonce = \(nonce) AND in_use AND releases < \(maxReleases)
            RETURNING nonce
            """)
        return !released.isEmpty
    }

    /// As ``enroll(app:grant:nextRefreshAt:now:)`` for a new seller or one
    /// that needs re-authorization; a seller tokenkeeper manages (active or
    /// disabled) is left untouched and nil returned.
    public func enrollUnlessManaged(app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp)
        async throws -> Account?
    {
        try await enroll(app: app, grant: grant, nextRefreshAt: nextRefreshAt, now: now, replacingManaged: false)
    }
}
