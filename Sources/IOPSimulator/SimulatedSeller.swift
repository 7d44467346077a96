/// A seller the simulated gateway knows, with the profile fields it answers.
public struct SimulatedSeller: Sendable, Equatable {
    public var sellerID: String
    public var userID: String
    public var userNick: String
    /// The login account (`account`), e.g. an e-mail address.
    public var account: String
    /// `account_id`; nil is answered as JSON `null` (the vendor documents null
    /// for `seller_center` accounts).
    public var accountID: String?
    public var accountPlatform: String
    public var sp: String
    public var locale: String
    public var havanaID: String
    /// This seller's `expires_in`; nil uses ``GatewayBehavior/accessTokenLifetime``.
    public var accessTokenLifetime: Duration?
    /// This seller's refresh validity; nil uses ``GatewayBehavior/refreshTokenValidity``.
    public var refreshTokenValidity: Duration?

    /// - Parameters:
    ///   - sellerID: The key tokenkeeper stores the seller under. May be empty
    ///     (some accounts have none), in which case ``userID`` identifies it.
    ///   - userID: Defaults to a number derived from nothing in particular: pass one when it matters.
    public init(
        sellerID: String, userID: String? = nil, userNick: String? = nil, account: String? = nil,
        accountID: String? = nil, accountPlatform: String = "seller_center", sp: String = "ae",
        locale: String = "en_US", havanaID: String? = nil, accessTokenLifetime: Duration? = nil,
        refreshTokenValidity: Duration? = nil
    ) {
        self.sellerID = sellerID
        self.userID = userID ?? "2\(sellerID)"
        self.userNick = userNick ?? "seller\(sellerID)"
        self.account = account ?? "seller\(sellerID)@example.com"
        self.accountID = accountID
        self.accountPlatform = accountPlatform
        self.sp = sp
        self.locale = locale
        self.havanaID = havanaID ?? "9\(sellerID)"
        self.accessTokenLifetime = accessTokenLifetime
        self.refreshTokenValidity = refreshTokenValidity
    }

    /// The key the simulator files the seller under: `seller_id`, or `user_id`
    /// where it is empty (the same rule tokenkeeper follows).
    public var key: String { sellerID.isEmpty ? userID : sellerID }
}
