public import TokenKeeperCore

/// What one refresh attempt of one account came to.
public enum RefreshOutcome: Sendable, Equatable {
    /// The rotated pair is durable in the store. `nextDue` is the next
    /// refresh, or, after a final grant (`refresh_expires_in` 0), the moment
    /// the last access token expires and the seller must authorize again.
    case refreshed(requestID: String?, nextDue: Timestamp, isFinalGrant: Bool)
    /// A transient or throttling failure; the account stays active and is
    /// tried again at `retryAt`.
    case failed(GatewayFailure, retryAt: Timestamp)
    /// The gateway rejected the configuration of the account's app (signature,
    /// app key, clock), or the app has no gateway; no account is marked, and
    /// the app's accounts are held back until it is fixed.
    case configurationRejected(GatewayFailure)
    /// The account is now `reauth_required` with `reason` (the gateway's code,
    /// or ``StatusReason/refreshTokenExpired``).
    case reauthRequired(reason: String, requestID: String?)
    /// The gateway rejected the refresh token while it was rejecting many
    /// sellers' at once: the seller is held, still active, not marked.
    case heldByBreaker(GatewayFailure)
    /// No call was made (or its answer was not used); see the reason.
    case skipped(SkipReason, nextDue: Timestamp?)
    /// Another process holds the account's lease until `until`.
    case busy(until: Timestamp)
    /// The store failed; tried again at `retryAt`.
    case storeFailed(message: String, retryAt: Timestamp)
    /// The seller is not in the store (removed).
    case notFound
    /// The scheduler stopped before this account's turn came.
    case notAttempted

    /// Why an attempt made no call, or did not use its answer.
    public enum SkipReason: String, Sendable, Equatable {
        /// Another process refreshed the account since it was scheduled.
        case notDue
        /// The account is not active (disabled or already `reauth_required`).
        case inactive
        /// Its refresh token is spent; it waits for its last access token to
        /// expire, then becomes `reauth_required`.
        case awaitingExpiry
        /// The stored refresh token changed during the call (another process or
        /// a re-authorization): nothing was written; the stored state stands.
        case tokenChanged
        /// Its app's calls were paused (throttling or configuration trouble),
        /// or the store could not take rotated pairs, by the time its lease
        /// was taken.
        case heldBack
    }

    /// True when the gateway accepted or rejected the refresh token itself,
    /// which it does only after accepting our signature and app key: proof
    /// that our configuration works. A transient failure proves nothing.
    var judgesTheRefreshToken: Bool {
        switch self {
        case .refreshed, .reauthRequired, .heldByBreaker: true
        default: false
        }
    }
}
