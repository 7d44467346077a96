public import TokenKeeperCore

/// A token pair the simulator issued, as kept in its per-seller log.
public struct IssuedTokenPair: Sendable, Equatable {
    /// How the pair came to be.
    public enum Origin: String, Sendable, Equatable {
        /// `/auth/token/create` exchanged an authorization code.
        case authorizationCode
        /// `/auth/token/refresh` rotated a refresh token.
        case rotation
        /// ``IOPSimulator/seedTokens(for:issuedAt:)`` created it directly.
        case seed
    }

    /// Whether the answer carrying the pair reached the client's socket.
    public enum Delivery: String, Sendable, Equatable {
        /// Written to the connection (or handed over directly, for a seed).
        case sent
        /// A ``FaultKind/resetAfterRotation`` dropped it on purpose.
        case lostByFault
        /// The write failed or the connection closed first (the client gave up).
        case notDelivered
    }

    public var sellerID: String
    /// The app key the seller is registered under; nil when open to every app.
    public var appKey: String? = nil
    public var origin: Origin
    public var accessToken: Secret
    public var refreshToken: Secret
    /// When the gateway issued it, in the gateway's clock.
    public var issuedAt: Timestamp
    /// `expires_in`.
    public var accessTokenLifetime: Duration
    /// `expire_time`.
    public var expireTime: Timestamp
    /// `refresh_token_valid_time`: inherited unchanged through every rotation.
    public var refreshTokenValidTime: Timestamp
    /// `refresh_expires_in` as answered (whole seconds, 0 when less than one is left).
    public var refreshExpiresIn: Duration
    /// The `request_id` of the answer, if it came from a request.
    public var requestID: String?
    public var delivery: Delivery
    /// A final grant (``AnswerQuirk/finalGrant``): `refresh_expires_in` 0 and
    /// the refresh token left out of the answer; nobody ever received it.
    public var isFinal = false

    /// True when the client was handed the pair: it must be stored somewhere.
    public var wasHandedOut: Bool { delivery == .sent }
}

/// What the gateway thinks of an access token.
public enum AccessTokenStatus: Sendable, Equatable {
    /// Issued by this simulator and not yet expired.
    case valid(sellerID: String, expireTime: Timestamp)
    /// Issued by this simulator, expired at `expireTime`.
    case expired(sellerID: String, expireTime: Timestamp)
    /// Never issued by this simulator.
    case unknown

    public var isValid: Bool {
        if case .valid = self { return true }
        return false
    }
}
