import Synchronization
public import TokenKeeperCore

extension IOPSimulator {
    /// Adds a seller, or replaces the profile and lifetimes of one already known
    /// (its tokens stay).
    public func addSeller(_ seller: SimulatedSeller) {
        core.gateway.withLock { $0.addSeller(seller) }
    }

    /// Adds a seller with a generated profile where fields are not given.
    /// - Parameters:
    ///   - sellerID: The seller id (the key under which it is filed, unless empty).
    ///   - accessTokenLifetime: This seller's `expires_in`; nil for the gateway's default.
    ///   - refreshTokenValidity: This seller's refresh validity; nil for the gateway's default.
    /// - Returns: The seller as added.
    @discardableResult
    public func addSeller(
        sellerID: String, userID: String? = nil, nick: String? = nil, account: String? = nil,
        accountID: String? = nil, accountPlatform: String = "seller_center",
        accessTokenLifetime: Duration? = nil, refreshTokenValidity: Duration? = nil
    ) -> SimulatedSeller {
        let seller = SimulatedSeller(
            sellerID: sellerID, userID: userID, userNick: nick, account: account, accountID: accountID,
            accountPlatform: accountPlatform, accessTokenLifetime: accessTokenLifetime,
            refreshTokenValidity: refreshTokenValidity)
        addSeller(seller)
        return seller
    }

    /// Every seller key, sorted.
    public var sellerIDs: [String] {
        core.gateway.withLock { $0.sellers.keys.sorted() }
    }

    /// Issues a one-use authorization code, as the seller's consent on the
    /// authorization page would. `/auth/token/create` exchanges it once; its
    /// exchange starts a new refresh validity and supersedes the seller's
    /// previous refresh token.
    /// - Parameters:
    ///   - sellerID: A seller added before.
    ///   - validity: How long the code may be exchanged; nil for the gateway's default.
    public func issueAuthorizationCode(for sellerID: String, validity: Duration? = nil) throws(IOPSimulatorError)
        -> String
    {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            try gateway.issueAuthorizationCode(for: sellerID, validity: validity)
        }
    }

    /// Creates an enrolled token pair directly, as if the seller had authorized
    /// at `issuedAt` — for import tests, which start from tokens another tool
    /// held. The seller's previous refresh token is superseded.
    /// - Parameters:
    ///   - sellerID: A seller added before.
    ///   - issuedAt: When the pair was issued; in the past to hand over an
    ///     expired access token or a refresh validity nearly used up. Default: now.
    /// - Returns: The pair, with its expiry times.
    @discardableResult
    public func seedTokens(for sellerID: String, issuedAt: Timestamp? = nil) throws(IOPSimulatorError)
        -> IssuedTokenPair
    {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            try gateway.seedTokens(for: sellerID, issuedAt: issuedAt)
        }
    }

    /// Revokes the seller's authorization: its current refresh token answers
    /// `IllegalRefreshToken` from now on, until a new code is exchanged or
    /// tokens are seeded. Access tokens already issued keep their expiry.
    public func revoke(sellerID: String) throws(IOPSimulatorError) {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            try gateway.revoke(sellerID)
        }
    }

    /// Sets a seller's own lifetimes; nil falls back to the gateway's default.
    /// Applies to pairs issued from now on; a refresh validity already running
    /// keeps its end.
    public func setLifetimes(for sellerID: String, accessToken: Duration?, refreshTokenValidity: Duration?)
        throws(IOPSimulatorError)
    {
        try core.gateway.withLock { (gateway: inout SimulatedGateway) throws(IOPSimulatorError) in
            try gateway.setLifetimes(
                for: sellerID, accessToken: accessToken, refreshTokenValidity: refreshTokenValidity)
        }
    }

    /// The refresh token that would rotate now; nil when revoked or never issued.
    public func currentRefreshToken(for sellerID: String) -> Secret? {
        core.gateway.withLock { $0.sellers[sellerID]?.currentRefreshToken.map(Secret.init) }
    }

    /// When the seller's refresh validity ends (`refresh_token_valid_time`).
    public func refreshTokenValidTime(for sellerID: String) -> Timestamp? {
        core.gateway.withLock { $0.sellers[sellerID]?.refreshTokenValidTime }
    }

    /// Every pair issued to the seller, oldest first (empty when
    /// ``GatewayBehavior/recordsIssuedTokens`` is off).
    public func issuedTokens(for sellerID: String) -> [IssuedTokenPair] {
        core.gateway.withLock { $0.sellers[sellerID]?.issued ?? [] }
    }

    /// The rotations whose answer was written to the client: each one's refresh
    /// token is the only key to the seller's future, so a correct client has
    /// stored every one (the last one, at least, must be in its store).
    public func rotationsHandedOut(for sellerID: String) -> [IssuedTokenPair] {
        issuedTokens(for: sellerID).filter { $0.origin == .rotation && $0.wasHandedOut }
    }

    /// The seller's statistics; nil for an unknown seller.
    public func sellerStats(for sellerID: String) -> SellerStats? {
        core.gateway.withLock { $0.sellers[sellerID]?.stats }
    }

    /// Refreshes of the seller being answered right now (arrived, answer not yet written).
    public func inFlightRefreshes(for sellerID: String) -> Int {
        core.gateway.withLock { $0.sellers[sellerID]?.inFlightRefreshes ?? 0 }
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
