/// What the gateway hands out for a seller: by `/auth/token/create` (from an
/// authorization code) or `/auth/token/refresh` (a rotated pair).
public struct TokenGrant: Sendable, Equatable {
    /// The seller key: `seller_id`, or `user_id` where the gateway left it
    /// empty; empty when the answer named neither (as `/auth/token/security/refresh`
    /// answers may: the refresher knows whose token it sent).
    public var sellerID: String
    public var profile: SellerProfile
    /// Nil when a success answer carried no access token: the stored one stands.
    public var accessToken: Secret?
    /// The rotated refresh token. Nil when the answer carried none: the stored
    /// one was not rotated (OAuth allows that) and stays, or, after a final
    /// grant, is never sent again.
    public var refreshToken: Secret?
    /// Lifetime of the access token as the gateway stated it (`expires_in`),
    /// sanitized: zero when the answer stated none or a negative one.
    public var accessTokenLifetime: Duration
    /// `refresh_expires_in` (or the distance to `refresh_token_valid_time`):
    /// how long the refresh token remains usable; nil when the answer said nothing.
    public var refreshTokenLifetime: Duration?
    /// True when the gateway said `refresh_expires_in` 0: it will not refresh
    /// this seller again, and the access token in hand is the last one.
    public var isFinalGrant: Bool
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
    /// What was odd about the answer and was sanitized rather than refused (a
    /// missing or absurd lifetime, a field that is not a number), for one log
    /// line. Never contains a token.
    public var anomalies: [String]

    public init(
        sellerID: String, profile: SellerProfile, accessToken: Secret?, refreshToken: Secret?,
        accessTokenLifetime: Duration, refreshTokenLifetime: Duration?, expireTime: Timestamp,
        refreshTokenValidTime: Timestamp?, receivedAt: Timestamp, requestID: String?,
        gatewayDate: Timestamp? = nil, isFinalGrant: Bool? = nil, anomalies: [String] = []
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
        self.isFinalGrant = isFinalGrant ?? (refreshTokenLifetime == .zero)
        self.anomalies = anomalies
    }

    /// True when the answer rotated the refresh token (carried a new one).
    public var rotatesRefreshToken: Bool { refreshToken != nil }
}

/// Descriptive fields of a seller, copied to the readers' database.
public struct SellerProfile: Sendable, Equatable, Codable {
    public var userID: String?
    public var userNick: String?
    public var account: String?
    public var accountPlatform: String?
    public var sp: String?
    public var locale: String?
    /// Lazada's `country` (`sg`, `th`, …, or `cb` for a cross-border account).
    public var country: String?
    /// Lazada's `country_user_info` (or `user_info`): each seller the token
    /// serves, one per country. Empty for an AliExpress seller.
    public var ventures: [VentureSeller]

    public init(
        userID: String? = nil, userNick: String? = nil, account: String? = nil,
        accountPlatform: String? = nil, sp: String? = nil, locale: String? = nil, country: String? = nil,
        ventures: [VentureSeller] = []
    ) {
        self.country = country
        self.ventures = ventures
        self.userID = userID
        self.userNick = userNick
        self.account = account
        self.accountPlatform = accountPlatform
        self.sp = sp
        self.locale = locale
    }
}

/// One seller of a Lazada account, in one country (a "venture"): the answer's
/// `country_user_info` lists one per country a cross-border account sells in.
/// Readers find the account's token by any of these seller ids.
public struct VentureSeller: Sendable, Equatable, Codable {
    public var country: String
    public var sellerID: String
    public var userID: String?
    public var shortCode: String?

    public init(country: String, sellerID: String, userID: String? = nil, shortCode: String? = nil) {
        self.country = country
        self.sellerID = sellerID
        self.userID = userID
        self.shortCode = shortCode
    }
}
