import PostgresNIO
import Synchronization
public import TokenKeeperCore

/// The event outbox (``TokenKeeperCore/EventOutbox``) on PostgreSQL, shared
/// by every node: the outbox rows are written by triggers in the events'
/// own transactions (schema version 2); each channel takes them on once,
/// and each delivery is claimed by one node at a time.
extension PostgresAccountStore {
    /// How long a claim on a delivery stands by itself (see
    /// ``dueDeliveries(channel:now:limit:)``): ``PostgresSettings/deliveryClaim``.
    var deliveryClaim: Duration { settings.deliveryClaim }

    /// The names this store's claims are made under: the node's (when it
    /// runs in the cluster) and this store's own, for a command or a claim
    /// made before the node joined.
    var claimants: [String] {
        [claimant] + (node.map { [$0] } ?? [])
    }

    /// The name a new claim is made under.
    var currentClaimant: String { node ?? claimant }

    // MARK: - Events

    /// Appends an event; a notified kind is queued in the outbox by the
    /// schema's trigger, in the same statement.
    public func appendEvent(
        _ kind: EventKind, app: AppName?, sellerID: String? = nil, detail: String? = nil, requestID: String? = nil,
        at: Timestamp
    ) async throws {
        _ = try await run(
            """
            INSERT INTO \(unescaped: s).events (at, app, seller_id, kind, detail, request_id, node)
            VALUES (
                \(at.millisecondsSince1970), \(app?.rawValue), \(sellerID), \(kind.rawValue), \(detail), \(requestID),
                \(node))
            """)
    }

    /// Raises one `reauth_due` event for each active seller whose refresh
    /// token ends at or before `horizon` and that was not yet warned for
    /// that token (`reauth_warned`, cleared when a new validity is stored).
    /// One statement: the sellers are locked (those another writer holds
    /// now are skipped, warned next time), marked, and their events written
    /// after every row lock is taken (the ORDER BY reads them all first), so
    /// that two nodes warn each seller once and the outbox lock is never
    /// waited for while holding it.
    public func raiseReauthDue(horizon: Timestamp, now: Timestamp, limit: Int = 1000) async throws -> [AccountKey] {
        try await run(
            """
            WITH entering AS (
                SELECT app, seller_id FROM \(unescaped: s).accounts
                WHERE status = 'active' AND refresh_token_valid_time <= \(horizon.millisecondsSince1970)
                  AND NOT reauth_warned
                ORDER BY refresh_token_valid_time, app COLLATE "C", seller_id COLLATE "C"
                LIMIT \(max(1, limit))
                FOR UPDATE SKIP LOCKED),
            marked AS (
                UPDATE \(unescaped: s).accounts a SET reauth_warned = true
                FROM entering WHERE a.app = entering.app AND a.seller_id = entering.seller_id
                RETURNING a.app, a.seller_id, a.refresh_token_valid_time AS ends),
            raised AS (
                INSERT INTO \(unescaped: s).events (at, app, seller_id, kind, detail, node)
                SELECT \(now.millisecondsSince1970), app, seller_id, 'reauth_due',
                    'the refresh token ends ' || \(unescaped: Self.iso8601SQL("ends")), \(node)
                FROM marked ORDER BY ends, app COLLATE "C", seller_id COLLATE "C")
            SELECT app, seller_id FROM marked ORDER BY ends, app COLLATE "C", seller_id COLLATE "C"
            """
        ).map { try Self.key(from: $0) }
    }

    /// `column` (epoch milliseconds) as ``TokenKeeperCore/Timestamp``'s
    /// description: ISO 8601 in UTC with milliseconds.
    static func iso8601SQL(_ column: String) -> String {
        """
        to_char(timestamp '1970-01-01 00:00:00' + \(column) * interval '1 millisecond', \
        'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        """
    }

    // MARK: - Deliveries

    /// The newest event id in the outbox (0 when empty).
    public func latestOutboxEventID() async throws -> Int64 {
        try await run("SELECT coalesce(max(event_id), 0)::bigint FROM \(unescaped: s).outbox")
            .first?.first?.decode(Int64.self) ?? 0
    }

    /// Takes on, for `channel`, every outbox event after the newest it has
    /// that is dated `oldest` or later. Notified events commit in id order
    /// (the schema's `number_notified_event`), so none can appear below the
    /// channel's newest later. Two nodes taking on at once take each event
    /// once (the primary key; the second finds it done).
    @discardableResult
    public func enqueueDeliveries(channel: String, oldest: Timestamp, now: Timestamp) async throws -> Int {
        try await run(
            """
            INSERT INTO \(unescaped: s).deliveries (event_id, channel, taken_at, next_attempt_at)
            SELECT o.event_id, \(channel), \(now.millisecondsSince1970), \(now.millisecondsSince1970)
            FROM \(unescaped: s).outbox o JOIN \(unescaped: s).events e ON e.id = o.event_id
            WHERE o.event_id > coalesce(
                    (SELECT max(event_id) FROM \(unescaped: s).deliveries WHERE channel = \(channel)), 0)
              AND e.at >= \(oldest.millisecondsSince1970)
            ORDER BY o.event_id
            ON CONFLICT (event_id, channel) DO NOTHING
            RETURNING event_id
            """
        ).count
    }

    /// Deliveries of `channel` due at `now`, the earliest first, claimed
    /// for this store.
    ///
    /// Several nodes deliver from one schema, and an event must reach each
    /// channel from one node at a time. The rows are claimed in one short
    /// statement: `FOR UPDATE SKIP LOCKED` keeps two nodes claiming at the
    /// same moment apart (each skips the rows the other is locking, rather
    /// than waiting for them and claiming them again), and the claim itself
    /// (`claimed_by`, `claimed_until` on PostgreSQL's clock) keeps them apart
    /// for as long as the delivery takes: no transaction, and no row lock,
    /// is held across the call to the receiver. A claim is given up by
    /// ``recordDelivery(eventID:channel:result:now:)``; one that was never
    /// recorded (the node stopped or died mid-delivery) is taken over once
    /// it has lapsed (``PostgresSettings/deliveryClaim``) and its node's
    /// heartbeat has stopped, so that a slow receiver on a live node is
    /// never sent the event twice at once. This store's own claims are
    /// answered again (and renewed): rows it claimed and did not get to
    /// (a failure stopped the batch) are not left waiting.
    public func dueDeliveries(channel: String, now: Timestamp, limit: Int = 50) async throws -> [PendingDelivery] {
        let window = cluster.withLock { $0.livenessWindow }.seconds
        let length = deliveryClaim.wholeMilliseconds
        let mine = claimants
        // Claimable: nobody holds it, this store does, or the claim lapsed
        // (PostgreSQL's clock) and its claimant is not a live node (the
        // same predicate in nextDeliveryAttempt).
        let query: PostgresQuery = """
            WITH due AS (
                SELECT d.event_id FROM \(unescaped: s).deliveries d
                WHERE d.channel = \(channel) AND d.delivered_at IS NULL AND d.abandoned_at IS NULL
                  AND d.next_attempt_at <= \(now.millisecondsSince1970)
                  AND (d.claimed_by IS NULL OR d.claimed_by = ANY(\(mine))
                    OR (d.claimed_until <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint AND NOT EXISTS (
                        SELECT 1 FROM \(unescaped: s).nodes n WHERE n.node = d.claimed_by
                          AND n.heartbeat_at > now() - make_interval(secs => \(window)))))
                ORDER BY d.next_attempt_at, d.event_id
                LIMIT \(max(1, limit))
                FOR UPDATE OF d SKIP LOCKED),
            claimed AS (
                UPDATE \(unescaped: s).deliveries d SET claimed_by = \(currentClaimant),
                    claimed_until = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + \(length)
                FROM due WHERE d.event_id = due.event_id AND d.channel = \(channel)
                RETURNING d.event_id, d.attempts, d.taken_at, d.next_attempt_at)
            SELECT e.id, e.at, e.app, e.seller_id, e.kind, e.detail, e.request_id, e.node, o.payload, c.attempts,
                a.refresh_token_valid_time, o.uid, c.taken_at
            FROM claimed c
            JOIN \(unescaped: s).events e ON e.id = c.event_id
            JOIN \(unescaped: s).outbox o ON o.event_id = c.event_id
            LEFT JOIN \(unescaped: s).accounts a ON a.app = e.app AND a.seller_id = e.seller_id
            ORDER BY c.next_attempt_at, c.event_id
            """
        return try await run(query).map { row in
            PendingDelivery(
                event: try Self.event(from: Array(row[0..<8])),
                uid: try row[11].decode(String.self), payload: try row[8].decode(String?.self),
                attempts: try row[9].decode(Int.self),
                reauthBy: try row[10].decode(Int64?.self).map { Timestamp(millisecondsSince1970: $0) },
                takenAt: Timestamp(millisecondsSince1970: try row[12].decode(Int64.self)))
        }
    }

    /// When the next pending delivery of `channel` that this store could
    /// claim is due. Deliveries another node holds are left out: that node
    /// records them; should it die, the notifier's poll finds them once
    /// they can be taken over (counting them would wake this node at once,
    /// again and again, while the other delivers).
    public func nextDeliveryAttempt(channel: String) async throws -> Timestamp? {
        let window = cluster.withLock { $0.livenessWindow }.seconds
        let query: PostgresQuery = """
            SELECT min(d.next_attempt_at) FROM \(unescaped: s).deliveries d
            WHERE d.channel = \(channel) AND d.delivered_at IS NULL AND d.abandoned_at IS NULL
              AND (d.claimed_by IS NULL OR d.claimed_by = ANY(\(claimants))
                OR (d.claimed_until <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint AND NOT EXISTS (
                    SELECT 1 FROM \(unescaped: s).nodes n WHERE n.node = d.claimed_by
                      AND n.heartbeat_at > now() - make_interval(secs => \(window)))))
            """
        return try await run(query).first?.first?.decode(Int64?.self).map { Timestamp(millisecondsSince1970: $0) }
    }

    /// Keeps the first rendering of an event's payload; returns the one
    /// stored. One statement: a second node storing at the same moment
    /// waits for the first's row and gets the first's payload back.
    public func storePayload(eventID: Int64, payload: String) async throws -> String {
        let rows = try await run(
            """
            UPDATE \(unescaped: s).outbox SET payload = coalesce(payload, \(payload))
            WHERE event_id = \(eventID)
            RETURNING payload
            """)
        return try rows.first?.first?.decode(String?.self) ?? payload
    }

    /// Records how one attempt ended, and gives this store's claim up (a
    /// claim another node took over meanwhile stays that node's).
    public func recordDelivery(eventID: Int64, channel: String, result: DeliveryResult, now: Timestamp) async throws {
        let mine = claimants
        let (deliveredAt, abandonedAt, nextAttemptAt, error): (Int64?, Int64?, Int64?, String?)
        switch result {
        case .delivered:
            (deliveredAt, abandonedAt, nextAttemptAt, error) = (now.millisecondsSince1970, nil, nil, nil)
        case .failed(let message, let retryAt):
            (deliveredAt, abandonedAt, nextAttemptAt, error) = (nil, nil, retryAt.millisecondsSince1970, message)
        case .abandoned(let message):
            (deliveredAt, abandonedAt, nextAttemptAt, error) = (nil, now.millisecondsSince1970, nil, message)
        }
        _ = try await run(
            """
            UPDATE \(unescaped: s).deliveries SET attempts = attempts + 1,
                delivered_at = coalesce(\(deliveredAt)::bigint, delivered_at),
                abandoned_at = coalesce(\(abandonedAt)::bigint, abandoned_at),
                next_attempt_at = coalesce(\(nextAttemptAt)::bigint, next_attempt_at),
                last_error = \(error)::text,
                claimed_by = CASE WHEN claimed_by = ANY(\(mine)) THEN NULL ELSE claimed_by END,
                claimed_until = CASE WHEN claimed_by = ANY(\(mine)) THEN NULL ELSE claimed_until END
            WHERE event_id = \(eventID) AND channel = \(channel)
            """)
    }

    /// Pending, abandoned and delivered counts by channel.
    public func deliveryCounts() async throws -> [String: DeliveryCounts] {
        var counts: [String: DeliveryCounts] = [:]
        for row in try await run(
            """
            SELECT channel, count(*) FILTER (WHERE delivered_at IS NULL AND abandoned_at IS NULL),
                count(*) FILTER (WHERE abandoned_at IS NOT NULL), count(*) FILTER (WHERE delivered_at IS NOT NULL)
            FROM \(unescaped: s).deliveries GROUP BY channel
            """)
        {
            counts[try row[0].decode(String.self)] = DeliveryCounts(
                pending: try row[1].decode(Int.self), abandoned: try row[2].decode(Int.self),
                delivered: try row[3].decode(Int.self))
        }
        return counts
    }

    /// An outbox event's uid, if it is one.
    public func outboxUID(eventID: Int64) async throws -> String? {
        try await run("SELECT uid FROM \(unescaped: s).outbox WHERE event_id = \(eventID)")
            .first?.first?.decode(String.self)
    }
}
