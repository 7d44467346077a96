/// What the refresh scheduler needs from storage. `SQLiteStore` implements it
/// over `keeper.db` and `tokens.db`; tests use an in-memory fake.
///
/// Every method that changes an account writes `keeper.db` first (durably), then
/// the readers' row in `tokens.db`.
public protocol AccountStore: Sendable {
    /// The next deadline of every account the scheduler must act on: active
    /// accounts (refreshable or waiting for their last access token to expire).
    func loadSchedule() async throws -> [ScheduledAccount]

    /// Accounts changed by any process since `cursor` (a CLI `add`, `import`,
    /// `enable`, `disable`, `remove` while the daemon runs), and the new cursor.
    /// Cheap when nothing changed. Pass `nil` to get the current cursor only.
    func changes(since cursor: ChangeCursor?) async throws -> (changed: [ScheduledAccount], cursor: ChangeCursor)

    /// Takes the lease on an account in one write transaction and returns the
    /// account as stored after taking it. Answers ``LeaseResult/busy`` when
    /// another owner holds the lease and either it has not expired or that
    /// owner is known to be alive (SQLite: its process still runs on this
    /// host; PostgreSQL: its node's heartbeat is current): a lease that lapsed
    /// because its owner could not renew it (the store failing while it holds
    /// a rotated pair) is never taken over from a live owner, since the
    /// refresh token stored is one the gateway has already rotated away.
    func acquireLease(account: AccountKey, owner: String, until: Timestamp, now: Timestamp) async throws -> LeaseResult

    /// Gives the lease back without changing anything else.
    func releaseLease(account: AccountKey, owner: String) async throws

    /// Commits a rotated pair, durably, if the stored refresh token is still
    /// `sent`; clears the failure count and the lease, stores `nextRefreshAt`.
    /// A rotation committed against the token that was sent leaves the seller
    /// `active`: one marked `reauth_required` meanwhile (by a process that
    /// sent the old token after this one's lease lapsed) is restored, with a
    /// `reactivated` event; a `disabled` seller stays disabled (the
    /// operator's choice) with the new pair stored.
    /// Idempotent: when the stored refresh token already is the grant's (this
    /// very commit reached the store before an error or a timeout hid it),
    /// returns true and writes nothing.
    /// Returns false (and writes nothing) when the stored token changed to
    /// anything else: the caller keeps the grant (salvaged where a restart finds it).
    func commitRotation(
        account: AccountKey, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) async throws -> Bool

    /// Records a failed attempt that leaves the account active: the failure
    /// count, the last error and request id, the next try; releases the lease.
    /// Only the lease's `owner` records: when another owner holds it (the
    /// lease lapsed and was taken over) nothing is written and the answer is
    /// false.
    @discardableResult
    func recordFailure(
        account: AccountKey, owner: String, failure: GatewayFailure, failedAttempts: Int, nextRefreshAt: Timestamp,
        now: Timestamp
    ) async throws -> Bool

    /// Keeps a rotated pair the store refused for this seller's own values
    /// out of a concurrency slot without letting go of the seller: records
    /// `reason` as the seller's last error (what `list` and `status` show),
    /// with a `refresh_failed` event, and keeps `owner`'s lease until `until`,
    /// so that no other process sends the stored refresh token, which the
    /// gateway has rotated away. Changes no token and no deadline. Only the
    /// lease's owner notes it; false otherwise.
    @discardableResult
    func noteRefusedPair(account: AccountKey, owner: String, reason: String, until: Timestamp, now: Timestamp)
        async throws -> Bool

    /// Moves every stored deadline (and lease) by `offset`, because the wall
    /// clock was stepped by that much: a deadline written before the step is
    /// to keep its distance from now, not its old wall-clock reading.
    func shiftSchedules(by offset: Duration) async throws

    /// Marks the account `reauth_required` with `reason` if its stored refresh
    /// token is still `sent`; records an event; releases the lease. Returns false
    /// (and writes nothing) when the token changed meanwhile: a lost race.
    func markReauthRequired(
        account: AccountKey, sent: Secret, reason: String, requestID: String?, now: Timestamp
    ) async throws -> Bool
}

/// One account's next deadline, as the scheduler keeps it.
///
/// A start-up loads one per seller (a million at once), so the two moments
/// are kept as plain milliseconds with a sentinel for "none": 48 bytes a
/// seller (its key, app and seller id, inline for names and ids of up to
/// 15 bytes), not the 64 that two optional timestamps would take.
public struct ScheduledAccount: Sendable, Equatable {
    public var key: AccountKey
    private var dueMilliseconds: Int64
    private var expireMilliseconds: Int64

    private static let none = Int64.min

    /// Nil when the account needs no action (disabled, reauth_required, removed).
    public var due: Timestamp? {
        get { dueMilliseconds == Self.none ? nil : Timestamp(millisecondsSince1970: dueMilliseconds) }
        set { dueMilliseconds = newValue?.millisecondsSince1970 ?? Self.none }
    }

    /// When its access token expires, where known: retries after a failed
    /// store write are never planned past it. A store may leave it out where
    /// it is an hour or more after `due` (reading a million of them costs
    /// time before READY, and no retry comes near them).
    public var expireTime: Timestamp? {
        get { expireMilliseconds == Self.none ? nil : Timestamp(millisecondsSince1970: expireMilliseconds) }
        set { expireMilliseconds = newValue?.millisecondsSince1970 ?? Self.none }
    }

    public init(_ key: AccountKey, due: Timestamp?, expireTime: Timestamp? = nil) {
        self.key = key
        dueMilliseconds = due?.millisecondsSince1970 ?? Self.none
        expireMilliseconds = expireTime?.millisecondsSince1970 ?? Self.none
    }
}

/// An opaque position in the store's change feed.
public struct ChangeCursor: Sendable, Equatable {
    public var dataVersion: Int64
    public var sequence: Int64

    public init(dataVersion: Int64, sequence: Int64) {
        self.dataVersion = dataVersion
        self.sequence = sequence
    }
}

/// The outcome of ``AccountStore/acquireLease(sellerID:owner:until:now:)``.
public enum LeaseResult: Sendable, Equatable {
    /// The lease is ours; the account as stored now.
    case acquired(Account)
    /// Someone else holds an unexpired lease.
    case busy(Lease)
    /// No such seller (removed).
    case notFound
}
