/// A seller account as `keeper.db` stores it: the refresh token, the current
/// access token and everything the scheduler needs.
public struct Account: Sendable, Equatable {
    public var app: AppName
    public var sellerID: String
    public var profile: SellerProfile
    public var refreshToken: Secret
    /// Absent for an account imported without one; it gets one at its first refresh.
    public var accessToken: Secret?
    /// When the access token expires (the gateway's absolute `expire_time`).
    public var expireTime: Timestamp?
    /// The access token's stated lifetime (`expires_in`) at the last grant.
    public var accessTokenLifetime: Duration?
    /// `refresh_token_valid_time`: no refresh is possible after this.
    public var refreshTokenValidTime: Timestamp?
    /// False once the gateway said `refresh_expires_in` 0: never send this
    /// refresh token again.
    public var isRefreshable: Bool
    public var status: AccountStatus
    /// The gateway's error code or one of ``StatusReason``'s; nothing else.
    public var statusReason: String?
    /// When the scheduler should next act on this account.
    public var nextRefreshAt: Timestamp?
    /// Consecutive failed attempts since the last success.
    public var failedAttempts: Int
    /// The last failure, as `code: message` (never a token).
    public var lastError: String?
    /// The gateway's request id of the last call for this account.
    public var lastRequestID: String?
    /// When the tokens were last granted (created or refreshed).
    public var refreshedAt: Timestamp?
    public var lease: Lease?
    public var updatedAt: Timestamp
    /// True when the last call with this refresh token may have reached the
    /// gateway and its answer was lost (see ``GatewayFailure/answerMayBeLost``).
    public var lastAnswerLost: Bool

    public init(
        app: AppName = .default, sellerID: String, profile: SellerProfile = SellerProfile(), refreshToken: Secret,
        accessToken: Secret? = nil, expireTime: Timestamp? = nil, accessTokenLifetime: Duration? = nil,
        refreshTokenValidTime: Timestamp? = nil, isRefreshable: Bool = true,
        status: AccountStatus = .active, statusReason: String? = nil, nextRefreshAt: Timestamp? = nil,
        failedAttempts: Int = 0, lastError: String? = nil, lastRequestID: String? = nil,
        refreshedAt: Timestamp? = nil, lease: Lease? = nil, updatedAt: Timestamp, lastAnswerLost: Bool = false
    ) {
        self.app = app
        self.sellerID = sellerID
        self.profile = profile
        self.refreshToken = refreshToken
        self.accessToken = accessToken
        self.expireTime = expireTime
        self.accessTokenLifetime = accessTokenLifetime
        self.refreshTokenValidTime = refreshTokenValidTime
        self.isRefreshable = isRefreshable
        self.status = status
        self.statusReason = statusReason
        self.nextRefreshAt = nextRefreshAt
        self.failedAttempts = failedAttempts
        self.lastError = lastError
        self.lastRequestID = lastRequestID
        self.refreshedAt = refreshedAt
        self.lease = lease
        self.updatedAt = updatedAt
        self.lastAnswerLost = lastAnswerLost
    }

    /// What identifies the account in every store.
    public var key: AccountKey { AccountKey(app: app, sellerID: sellerID) }

    /// The access token readers may use at `now`: present, unexpired, active.
    public func hasUsableAccessToken(at now: Timestamp) -> Bool {
        guard status == .active, accessToken != nil, let expireTime else { return false }
        return expireTime > now
    }
}

/// A claim on one account by one refresher (this daemon or a CLI process),
/// taken in a write transaction so that a refresh token is sent at most once.
public struct Lease: Sendable, Equatable {
    /// Who holds it: `pid@host/uuid`-like, unique per process.
    public var owner: String
    /// After this the lease is void, so a crashed holder never blocks an account.
    public var expiresAt: Timestamp

    public init(owner: String, expiresAt: Timestamp) {
        self.owner = owner
        self.expiresAt = expiresAt
    }
}
