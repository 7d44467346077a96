/// What happened, in the `events` table's `kind` column. Open for kinds that
/// other parts of tokenkeeper record; ours are the static members.
public struct EventKind: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }

    /// Stored from an authorization code (`add --code`), new or re-authorized.
    public static let enrolled: EventKind = "enrolled"
    /// Stored by `import`.
    public static let imported: EventKind = "imported"
    /// A rotated pair was committed.
    public static let refreshed: EventKind = "refreshed"
    /// A refresh failed and will be retried.
    public static let refreshFailed: EventKind = "refresh_failed"
    /// The account needs re-authorization.
    public static let reauthRequired: EventKind = "reauth_required"
    public static let disabled: EventKind = "disabled"
    public static let enabled: EventKind = "enabled"
    public static let removed: EventKind = "removed"
    /// tokens.db rows were rewritten from keeper.db (after a crash or damage).
    public static let readersRepaired: EventKind = "readers_repaired"
    /// An active account's refresh token ends within the warning window.
    public static let reauthDue: EventKind = "reauth_due"
    /// A `reauth_required` account is active again: authorized again, or a
    /// rotation sent before it was marked committed after all.
    public static let reactivated: EventKind = "reactivated"
    /// Refreshing is held back (configuration, store, mass rejection).
    public static let degraded: EventKind = "degraded"
    /// What `degraded` reported is over.
    public static let recovered: EventKind = "recovered"

    /// Every kind tokenkeeper records.
    public static let all: [EventKind] = [
        .enrolled, .imported, .refreshed, .refreshFailed, .reauthRequired, .reauthDue, .reactivated, .degraded,
        .recovered, .disabled, .enabled, .removed, .readersRepaired,
    ]

    /// The kinds that go to the outbox.
    public static let notified: [EventKind] = [.reauthDue, .reauthRequired, .reactivated, .degraded, .recovered]
}

/// One row of the append-only event log. Holds no token (at most a
/// fingerprint).
public struct StoredEvent: Sendable, Equatable {
    public var id: Int64
    public var at: Timestamp
    /// The app it concerns; nil for an event of the daemon as a whole.
    public var app: AppName?
    public var sellerID: String?
    public var kind: EventKind
    public var detail: String?
    /// The gateway's request id, for support tickets.
    public var requestID: String?
    /// The node that wrote it (PostgreSQL); nil for a command or on SQLite.
    public var node: String?

    public init(
        id: Int64, at: Timestamp, app: AppName? = nil, sellerID: String?, kind: EventKind, detail: String?,
        requestID: String?, node: String? = nil
    ) {
        self.id = id
        self.at = at
        self.app = app
        self.sellerID = sellerID
        self.kind = kind
        self.detail = detail
        self.requestID = requestID
        self.node = node
    }

    /// The account it concerns, if any.
    public var account: AccountKey? {
        sellerID.map { AccountKey(app: app ?? .default, sellerID: $0) }
    }
}

/// What `events` asks for; nil fields do not filter.
public struct EventQuery: Sendable, Equatable {
    public var app: AppName?
    public var sellerID: String?
    public var since: Timestamp?
    public var kind: EventKind?
    public var limit: Int

    public init(
        app: AppName? = nil, sellerID: String? = nil, since: Timestamp? = nil, kind: EventKind? = nil,
        limit: Int = 100
    ) {
        self.app = app
        self.sellerID = sellerID
        self.since = since
        self.kind = kind
        self.limit = limit
    }
}
