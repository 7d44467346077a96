public import TokenKeeperCore

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
}

/// One row of the append-only `events` table. Holds no token (at most a
/// fingerprint).
public struct StoredEvent: Sendable, Equatable {
    public var id: Int64
    public var at: Timestamp
    public var sellerID: String?
    public var kind: EventKind
    public var detail: String?
    /// The gateway's request id, for support tickets.
    public var requestID: String?

    public init(
        id: Int64, at: Timestamp, sellerID: String?, kind: EventKind, detail: String?, requestID: String?
    ) {
        self.id = id
        self.at = at
        self.sellerID = sellerID
        self.kind = kind
        self.detail = detail
        self.requestID = requestID
    }
}
