import PostgresNIO
public import TokenKeeperCore

/// What health, metrics and `status` read (``TokenKeeperCore/FleetReporting``).
extension PostgresAccountStore {
    /// Counts by status (every status, 0 when none), active sellers whose
    /// refresh token ends by `reauthHorizon`, the earliest deadline and the
    /// earliest access-token expiry among active sellers: one pass over the
    /// accounts.
    public func fleetFigures(reauthHorizon: Timestamp) async throws -> FleetFigures {
        let rows = try await run(
            """
            SELECT count(*) FILTER (WHERE status = 'active'),
                count(*) FILTER (WHERE status = 'reauth_required'),
                count(*) FILTER (WHERE status = 'disabled'),
                count(*) FILTER (WHERE status = 'active'
                    AND refresh_token_valid_time <= \(reauthHorizon.millisecondsSince1970)),
                min(next_refresh_at) FILTER (WHERE status = 'active'),
                min(expire_time) FILTER (WHERE status = 'active')
            FROM \(unescaped: s).accounts
            """)
        guard let row = rows.first else { return FleetFigures() }
        func time(_ index: Int) throws -> Timestamp? {
            try row[index].decode(Int64?.self).map { Timestamp(millisecondsSince1970: $0) }
        }
        return FleetFigures(
            byStatus: [
                .active: try row[0].decode(Int.self), .reauthRequired: try row[1].decode(Int.self),
                .disabled: try row[2].decode(Int.self),
            ],
            reauthDue: try row[3].decode(Int.self), nextRefreshAt: try time(4), earliestAccessExpiry: try time(5))
    }

    /// How many sellers must authorize again (from the status index).
    public func countReauthRequired() async throws -> Int {
        try await run("SELECT count(*) FROM \(unescaped: s).accounts WHERE status = 'reauth_required'")
            .first?.first?.decode(Int.self) ?? 0
    }

    /// `reauth_required` sellers, the longest waiting first.
    public func accountsNeedingReauthorization(limit: Int) async throws -> [Account] {
        try await run(
            """
            SELECT \(unescaped: Self.accountColumns) FROM \(unescaped: s).accounts
            WHERE status = 'reauth_required'
            ORDER BY updated_at, app COLLATE "C", seller_id COLLATE "C" LIMIT \(max(0, limit))
            """
        ).map(Self.account(from:))
    }

    /// Active sellers whose refresh token ends at or before `horizon`, the
    /// soonest first.
    public func accountsDueForReauthorization(horizon: Timestamp, limit: Int) async throws -> [Account] {
        try await run(
            """
            SELECT \(unescaped: Self.accountColumns) FROM \(unescaped: s).accounts
            WHERE status = 'active' AND refresh_token_valid_time <= \(horizon.millisecondsSince1970)
            ORDER BY refresh_token_valid_time, app COLLATE "C", seller_id COLLATE "C" LIMIT \(max(0, limit))
            """
        ).map(Self.account(from:))
    }

    /// Active sellers by next deadline, the soonest first (one without a
    /// deadline first, as keeper.db orders NULL).
    public func nextRefreshes(limit: Int) async throws -> [Account] {
        try await run(
            """
            SELECT \(unescaped: Self.accountColumns) FROM \(unescaped: s).accounts
            WHERE status = 'active'
            ORDER BY next_refresh_at NULLS FIRST, app COLLATE "C", seller_id COLLATE "C" LIMIT \(max(0, limit))
            """
        ).map(Self.account(from:))
    }
}
