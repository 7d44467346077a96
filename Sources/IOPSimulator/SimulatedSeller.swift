public import TokenKeeperCore

/// A seller the simulated gateway knows, with the profile fields it answers.
public struct SimulatedSeller: Sendable, Equatable {
    public var sellerID: String
    /// The app key the seller authorized: only that app's requests can use
    /// its codes and tokens, and the same seller id under another app key is
    /// another seller with tokens of its own. Nil: any app the gateway knows.
    public var appKey: String?
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
    /// Lazada's `country` of the account: `sg`, `th`, …, or `cb` for a
    /// cross-border one. Nil: `cb` with several ``ventures``, else the one
    /// venture's country, else `sg`.
    public var country: String?
    /// The sellers a Lazada answer lists (`country_user_info`), in order; a
    /// cross-border account has one per country. Empty: the seller itself,
    /// in ``country``, with a short code made from its id.
    public var ventures: [VentureSeller]

    /// - Parameters:
    ///   - sellerID: The key tokenkeeper stores the seller under. May be empty
    ///     (some accounts have none), in which case ``userID`` identifies it.
    ///   - appKey: The app the seller authorized; nil for any app.
    ///   - userID: Defaults to a number derived from nothing in particular: pass one when it matters.
    ///   - country: Lazada's `country` of the account.
    ///   - ventures: The sellers a Lazada answer lists; empty for the seller itself.
    public init(
        sellerID: String, appKey: String? = nil, userID: String? = nil, userNick: String? = nil,
        account: String? = nil, accountID: String? = nil, accountPlatform: String = "seller_center",
        sp: String = "ae", locale: String = "en_US", havanaID: String? = nil, accessTokenLifetime: Duration? = nil,
        refreshTokenValidity: Duration? = nil, country: String? = nil, ventures: [VentureSeller] = []
    ) {
        self.sellerID = sellerID
        self.appKey = appKey
        self.country = country
        self.ventures = ventures
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

    /// A Lazada cross-border account (`country` `cb`): one token serving a
    /// seller in each of `ventures`' countries. It is filed under the first
    /// venture's seller id, the key tokenkeeper gives such an account.
    /// - Parameters:
    ///   - ventures: The account's sellers, one per country, in the order answered; not empty.
    ///   - appKey: The app the account authorized; nil for any app.
    ///   - account: The login account (`account`); generated when nil.
    /// - Returns: The account, to pass to ``IOPSimulator/addSeller(_:)``.
    public static func crossBorderAccount(
        ventures: [VentureSeller], appKey: String? = nil, account: String? = nil,
        accessTokenLifetime: Duration? = nil, refreshTokenValidity: Duration? = nil
    ) -> SimulatedSeller {
        precondition(!ventures.isEmpty, "a cross-border account sells in at least one country")
        return SimulatedSeller(
            sellerID: ventures[0].sellerID, appKey: appKey, userID: ventures[0].userID, account: account,
            accessTokenLifetime: accessTokenLifetime, refreshTokenValidity: refreshTokenValidity, country: "cb",
            ventures: ventures)
    }

    /// The sellers a Lazada answer lists.
    var lazadaVentures: [VentureSeller] {
        guard ventures.isEmpty else { return ventures }
        let country = country ?? "sg"
        return [
            VentureSeller(
                country: country, sellerID: sellerID, userID: userID,
                shortCode: country.uppercased() + String(sellerID.suffix(6)))
        ]
    }

    /// The `country` a Lazada answer states.
    var lazadaCountry: String {
        country ?? (ventures.count > 1 ? "cb" : ventures.first?.country ?? "sg")
    }
}
