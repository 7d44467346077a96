public import TokenKeeperCore

// What a test of a single-app behaviour means by a seller id: the seller of
// the default app. In the testing target only, so that the daemon's code can
// never fall back to the default app by accident.

extension AccountKey {
    /// The default app's seller `sellerID` (what a single-app test means by
    /// a seller id held in a variable; a literal converts by itself).
    public static func seller(_ sellerID: String) -> AccountKey {
        AccountKey(app: .default, sellerID: sellerID)
    }
}

extension ManagedAccountStore {
    /// Enrolls the grant's seller under the default app (what a test of a
    /// single-app behaviour means).
    public func enroll(grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) async throws -> Account {
        try await enroll(app: .default, grant: grant, nextRefreshAt: nextRefreshAt, now: now)
    }
}

extension CallbackStateStore {
    /// As ``CallbackStateStore/enrollUnlessManaged(app:grant:nextRefreshAt:now:)`` for the default app.
    public func enrollUnlessManaged(grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) async throws
        -> Account?
    {
        try await enrollUnlessManaged(app: .default, grant: grant, nextRefreshAt: nextRefreshAt, now: now)
    }
}

extension EventOutbox {
    /// Appends an event; one naming a seller is the default app's.
    public func appendEvent(
        _ kind: EventKind, sellerID: String?, detail: String?, requestID: String?, at: Timestamp
    ) async throws {
        try await appendEvent(
            kind, app: sellerID == nil ? nil : .default, sellerID: sellerID, detail: detail, requestID: requestID,
            at: at)
    }
}
