/// What the gateway hands out for a seller: by `/auth/token/create` (from an
/// authorization code) or `/auth/token/refresh` (a rotated pair).
public struct TokenGrant: Sendable, Equatable {
    /// The seller key: `seller_id`, or `user_id` where the gateway left it empty.
    public var sellerID: String
    public var profile: SellerProfile
    public var accessToken: Secret
    public var refreshToken: Secret
    /// Lifetime of the access token as the gateway stated it (`expires_in`).
    public var accessTokenLifetime: Duration
    /// `refresh_expires_in`: how long the refresh token remains usable. Zero
    /// means the gateway will not refresh this seller again.
    public var refreshTokenLifetime: Duration
    /// `expire_time`: when the access token expires, in the gateway's clock.
    public var expireTime: Timestamp
    /// `refresh_token_valid_time`: after this no refresh is possible and the
    /// seller must authorize again.
    public var refreshTokenValidTime: Timestamp?
    /// When the answer arrived, in our clock. Schedules are computed from here,
    /// so a skewed local clock cannot make a refresh late.
    public var receivedAt: Timestamp
    /// The gateway's `request_id`, kept for support tickets.
    public var requestID: String?
    /// The gateway's HTTP `Date` header, to notice a skewed local clock.
    public var gatewayDate: Timestamp?

    public init(
        sellerID: String, profile: SellerProfile, accessToken: Secret, refreshToken: Secret,
        accessTokenLifetime: Duration, refreshTokenLifetime: Duration, expireTime: Timestamp,
        refreshTokenValidTime: Timestamp?, receivedAt: Timestamp, requestID: String?,
        gatewayDate: Timestamp? = nil
    ) {
        self.sellerID = sellerID
        self.profile = profile
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.accessTokenLifetime = accessTokenLifetime
        self.refreshTokenLifetime = refreshTokenLifetime
        self.expireTime = expireTime
        self.refreshTokenValidTime = refreshTokenValidTime
        self.receivedAt = receivedAt
        self.requestID = requestID
        self.gatewayDate = gatewayDate
    }

    /// True when the gateway said it will not refresh this seller again
    /// (`refresh_expires_in` 0): the access token in hand is the last one.
    public var isFinalGrant: Bool { refreshTokenLifetime <= .zero }
}

/// Descriptive fields of a seller, copied to the readers' database.
public struct SellerProfile: Sendable, Equatable, Codable {
    public var userID: String?
    public var userNick: String?
    public var account: String?
    public var accountPlatform: String?
    public var sp: String?
    public var locale: String?

    public init(
        userID: String? = nil, userNick: String? = nil, account: String? = nil,
        accountPlatform: String? = nil, sp: String? = nil, locale: String? = nil
    ) {
        self.userID = userID
        self.userNick = userNick
        self.account = account
        self.accountPlatform = accountPlatform
        self.sp = sp
        self.locale = locale
    }
}
