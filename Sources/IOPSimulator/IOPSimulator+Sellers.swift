import Synchronization
public import TokenKeeperCore

// A seller is named by its id and, where sellers are registered per app, the
// app key: with an app key, the seller under it (or one open to every app);
// without, the one open to every app, or else the only one with that id.
extension IOPSimulator {
    /// Adds a seller, or replaces the profile and lifetimes of one already known
    /// (its tokens stay). A seller id under two app keys is two sellers.
    public func addSeller(_ seller: SimulatedSeller) {
        core.gateway.withLock { $0.addSeller(seller) }
    }

    /// Adds a seller with a generated profile where fields are not given.
    /// - Parameters:
    ///   - sellerID: The seller id (the key under which it is filed, unless empty).
    ///   - appKey: The app the seller authorized; nil for any app the gateway knows.
    ///   - accessTokenLifetime: This seller's `expires_in`; nil for the gateway's default.
    ///   - refreshTokenValidity: This seller's refresh validity; nil for the gateway's default.
    ///   - country: Lazada's `country` of the account (``SimulatedSeller/country``).
    ///   - ventures: The sellers a Lazada answer lists (``SimulatedSeller/ventures``).
    /// - Returns: The seller as added.
    @discardableResult
    public func addSeller(
        sellerID: String, appKey: String? = nil, userID: String? = nil, nick: String? = nil, account: String? = nil,
        accountID: String? = nil, accountPlatform: String = "seller_center",
        accessTokenLifetime: Duration? = nil, refreshTokenValidity: Duration? = nil, country: String? = nil,
        ventures: [VentureSeller] = []
    ) -> SimulatedSeller {
        let seller = SimulatedSeller(
            sellerID: sellerID, appKey: appKey, userID: userID, userNick: nick, account: account,
            accountID: accountID, accountPlatform: accountPlatform, accessTokenLifetime: accessTokenLifetime,
            refreshTokenValidity: refreshTokenValidity, country: country, ventures: ventures)
        addSeller(seller)
        return seller
    }

    /// Every seller key, sorted, each once whatever the app keys it is under.
    public var sellerIDs: [String] {
        core.gateway.withLock { Set($0.sellers.keys.map(\.sellerID)).sorted() }
    }

    /// The keys of the sellers registered under `appKey` (not those open to every app), sorted.
    public func sellerIDs(forApp appKey: String) -> [String] {
        core.gateway.withLock { gateway in
            gateway.sellers.keys.filter { $0.appKey == appKey }.map(\.sellerID).sorted()
        }
    }

    /// Issues a one-use authorization code, as the seller's consent on the
    /// authorization page would. `/auth/token/create` exchanges it once; its
    /// exchange starts a new refresh validity and supersedes the seller's
    /// previous refresh token.
    /// - Parameters:
    ///   - sellerID: A seller added before.
    ///   - appKey: The app key it is registered under, where several have the id.
    ///   - validity: How long the code may be exchanged; nil for the gateway's default.
    public func issueAuthorizationCode(for sellerID: String, appKey: String? = nil, validity: Duration? = nil)
        throws(IOPSimulatorError) -> String
    {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            gateway.issueAuthorizationCode(for: try gateway.sellerRef(sellerID, appKey: appKey), validity: validity)
        }
    }

    /// Creates an enrolled token pair directly, as if the seller had authorized
    /// at `issuedAt` — for import tests, which start from tokens another tool
    /// held. The seller's previous refresh token is superseded.
    /// - Parameters:
    ///   - sellerID: A seller added before.
    ///   - appKey: The app key it is registered under, where several have the id.
    ///   - issuedAt: When the pair was issued; in the past to hand over an
    ///     expired access token or a refresh validity nearly used up. Default: now.
    /// - Returns: The pair, with its expiry times.
    @discardableResult
    public func seedTokens(for sellerID: String, appKey: String? = nil, issuedAt: Timestamp? = nil)
        throws(IOPSimulatorError) -> IssuedTokenPair
    {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            gateway.seedTokens(for: try gateway.sellerRef(sellerID, appKey: appKey), issuedAt: issuedAt)
        }
    }

    /// Revokes the seller's authorization: its current refresh token answers
    /// `IllegalRefreshToken` from now on, until a new code is exchanged or
    /// tokens are seeded. Access tokens already issued keep their expiry.
    public func revoke(sellerID: String, appKey: String? = nil) throws(IOPSimulatorError) {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            gateway.revoke(try gateway.sellerRef(sellerID, appKey: appKey))
        }
    }

    /// Makes the gateway stop accepting the seller's current access token, as
    /// when the seller changes its password: business calls with it get
    /// `IllegalAccessToken` from now on, before it expires. The refresh token
    /// is untouched, so a refresh issues a new pair that works.
    /// `accessTokenStatus(_:)` still reports the token by its expiry alone.
    /// - Parameters:
    ///   - sellerID: A seller added before.
    ///   - appKey: The app key it is registered under, where several have the id.
    /// - Throws: ``IOPSimulatorError/unknownSeller(_:)`` or
    ///   ``IOPSimulatorError/ambiguousSeller(_:appKeys:)``.
    public func invalidateAccessToken(for sellerID: String, appKey: String? = nil) throws(IOPSimulatorError) {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            gateway.invalidateAccessToken(try gateway.sellerRef(sellerID, appKey: appKey))
        }
    }

    /// Sets a seller's own lifetimes; nil falls back to the gateway's default.
    /// Applies to pairs issued from now on; a refresh validity already running
    /// keeps its end.
    public func setLifetimes(
        for sellerID: String, appKey: String? = nil, accessToken: Duration?, refreshTokenValidity: Duration?
    ) throws(IOPSimulatorError) {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            gateway.setLifetimes(
                for: try gateway.sellerRef(sellerID, appKey: appKey), accessToken: accessToken,
                refreshTokenValidity: refreshTokenValidity)
        }
    }

    /// The refresh token that would rotate now; nil when revoked or never issued.
    public func currentRefreshToken(for sellerID: String, appKey: String? = nil) -> Secret? {
        core.gateway.withLock { $0.record(sellerID, appKey: appKey)?.currentRefreshToken.map(Secret.init) }
    }

    /// When the seller's refresh validity ends (`refresh_token_valid_time`).
    public func refreshTokenValidTime(for sellerID: String, appKey: String? = nil) -> Timestamp? {
        core.gateway.withLock { $0.record(sellerID, appKey: appKey)?.refreshTokenValidTime }
    }

    /// Every pair issued to the seller, oldest first (empty when
    /// ``GatewayBehavior/recordsIssuedTokens`` is off).
    public func issuedTokens(for sellerID: String, appKey: String? = nil) -> [IssuedTokenPair] {
        core.gateway.withLock { $0.record(sellerID, appKey: appKey)?.issued ?? [] }
    }

    /// The rotations whose answer was written to the client: each one's refresh
    /// token is the only key to the seller's future, so a correct client has
    /// stored every one (the last one, at least, must be in its store).
    public func rotationsHandedOut(for sellerID: String, appKey: String? = nil) -> [IssuedTokenPair] {
        issuedTokens(for: sellerID, appKey: appKey).filter { $0.origin == .rotation && $0.wasHandedOut }
    }

    /// The seller's statistics; nil for an unknown seller.
    public func sellerStats(for sellerID: String, appKey: String? = nil) -> SellerStats? {
        core.gateway.withLock { $0.record(sellerID, appKey: appKey)?.stats }
    }

    /// Refreshes of the seller being answered right now (arrived, answer not yet written).
    public func inFlightRefreshes(for sellerID: String, appKey: String? = nil) -> Int {
        core.gateway.withLock { $0.record(sellerID, appKey: appKey)?.inFlightRefreshes ?? 0 }
    }

    /// Whether an access token was issued here and is still valid, in the gateway's clock.
    public func accessTokenStatus(_ accessToken: String) -> AccessTokenStatus {
        core.gateway.withLock { $0.accessTokenStatus(accessToken) }
    }

    /// Whether an access token was issued here and is still valid, in the gateway's clock.
    public func accessTokenStatus(_ accessToken: Secret) -> AccessTokenStatus {
        accessTokenStatus(accessToken.exposedValue)
    }
}
