public import TokenKeeperCore

/// What the simulated gateway does, changeable while it runs
/// (``IOPSimulator/updateBehavior(_:)``); a change applies to the next request.
public struct GatewayBehavior: Sendable, Equatable {
    /// App keys the gateway knows, with their secrets: each request's
    /// signature is checked with the secret of the app key it names.
    public var apps: [String: Secret]
    /// `expires_in` of access tokens, unless a seller has its own.
    public var accessTokenLifetime: Duration
    /// How long a refresh token chain stays usable after authorization
    /// (`refresh_token_valid_time` − authorization time), unless a seller has its
    /// own. A refresh does not extend it, as the vendor documents.
    public var refreshTokenValidity: Duration
    /// How long an issued authorization code may be exchanged.
    public var authorizationCodeValidity: Duration
    /// How far a request's `timestamp` may be from the gateway's clock before
    /// `IllegalTimestamp`.
    public var timestampTolerance: Duration
    /// Whether numbers go out as JSON numbers or numeric strings.
    public var numberEncoding: NumberEncoding
    /// The shape of error bodies.
    public var errorEnvelope: ErrorEnvelope
    /// Random faults.
    public var faults: FaultInjection
    /// How long a ``FaultKind/slowResponse`` holds its answer.
    public var slowResponseDelay: Duration
    /// The N of "ban will last N seconds" in a ``FaultKind/throttled`` answer.
    public var throttleBanSeconds: Int
    /// When true, after a ``FaultKind/throttled`` answer every call of the
    /// same app key is refused with `ApiCallLimit` until the ban is over, and
    /// counted in ``SimulatorCounters/callsDuringBan``: a client that ignores
    /// the ban shows. Other apps' calls go on, as the gateway limits each app.
    public var enforcesThrottleBan: Bool
    /// A delay added to every answer (not to resets). The request takes effect
    /// on arrival and the answer travels for this long, so a client whose
    /// timeout is shorter loses a rotation, as it would against the real gateway.
    public var responseLatency: Duration
    /// Whether every issued token pair is kept for ``IOPSimulator/issuedTokens(for:)``.
    /// Turn it off for long benchmarks to keep memory flat.
    public var recordsIssuedTokens: Bool
    /// Odd-but-legal answers, per seller id (under every app key), for the
    /// seller's next rotations.
    public var quirks: [String: AnswerQuirk] = [:]
    /// While true, every refresh token is refused with `IllegalRefreshToken`
    /// and none is consumed: a platform incident (or a wrong regional
    /// endpoint) that a client must not take for every seller revoking the app.
    public var rejectsAllRefreshTokens = false
    /// The seller "logged in" on the authorization page when the request
    /// names none (a test's stand-in for the seller's browser session).
    public var loggedInSeller: String?
    /// Closes every connection after its answer (`Connection: close`), as
    /// some proxies do: each call then costs the client a new connection
    /// (and a descriptor).
    public var closesConnectionAfterAnswer = false

    /// - Parameters:
    ///   - apps: App keys with their secrets.
    ///   - accessTokenLifetime: Default `expires_in`; 7 days, like Lazada's documented value.
    ///   - refreshTokenValidity: Default refresh validity; 30 days.
    public init(
        apps: [String: Secret], accessTokenLifetime: Duration = .seconds(7 * 86_400),
        refreshTokenValidity: Duration = .seconds(30 * 86_400),
        authorizationCodeValidity: Duration = .seconds(1800), timestampTolerance: Duration = .seconds(600),
        numberEncoding: NumberEncoding = .mixed, errorEnvelope: ErrorEnvelope = .topLevel,
        faults: FaultInjection = .none, slowResponseDelay: Duration = .seconds(5), throttleBanSeconds: Int = 1,
        enforcesThrottleBan: Bool = true, responseLatency: Duration = .zero, recordsIssuedTokens: Bool = true
    ) {
        self.apps = apps
        self.accessTokenLifetime = accessTokenLifetime
        self.refreshTokenValidity = refreshTokenValidity
        self.authorizationCodeValidity = authorizationCodeValidity
        self.timestampTolerance = timestampTolerance
        self.numberEncoding = numberEncoding
        self.errorEnvelope = errorEnvelope
        self.faults = faults
        self.slowResponseDelay = slowResponseDelay
        self.throttleBanSeconds = throttleBanSeconds
        self.enforcesThrottleBan = enforcesThrottleBan
        self.responseLatency = responseLatency
        self.recordsIssuedTokens = recordsIssuedTokens
    }
}

/// An odd answer the real gateway (or another marketplace on the same
/// protocol) may give to `/auth/token/refresh`, set per seller.
public enum AnswerQuirk: String, Sendable, Equatable, CaseIterable {
    /// The last refresh: `refresh_expires_in` 0 and no `refresh_token` field.
    /// The token sent is consumed; the seller has no refresh token after it.
    case finalGrant
    /// `expires_in` 0 and `expire_time` at the answer's time: a token that is
    /// already expired, rotated as usual.
    case zeroLifetime
    /// The shape of `/auth/token/security/refresh` answers: tokens and
    /// lifetimes only, no seller fields (`seller_id`, `user_id`, `account`, …).
    case securityShape
    /// In ``AnswerShape/lazada`` answers, authorizations included: the sellers
    /// listed under `user_info` instead of `country_user_info`, as some local
    /// sellers' answers are, and a single seller as an object, not a list.
    case userInfo
}

/// How the numeric fields of a success (`expires_in`, `refresh_expires_in`,
/// `expire_time`, `refresh_token_valid_time`), `code`, and in Lazada's shape
/// the ids of `country_user_info`, are encoded: the real gateways have sent
/// both forms.
public enum NumberEncoding: String, Sendable, Equatable, CaseIterable {
    /// JSON numbers; `code` stays the string `"0"`, as the gateway sends it.
    case numbers
    /// Numeric strings, as in the vendor's sample answer (`"expires_in": "10"`).
    case strings
    /// A coin flip from the seeded generator for every field of every answer,
    /// `code` included.
    case mixed
}

/// The shape of an error body.
public enum ErrorEnvelope: String, Sendable, Equatable, CaseIterable {
    /// `{"type":…,"code":…,"message":…,"request_id":…,"_trace_id_":…}`, as the
    /// gateway answers `/rest` calls.
    case topLevel
    /// `{"error_response":{"type":…,"code":…,"msg":…,"request_id":…}}`, the older form.
    case errorResponse
    /// A coin flip per answer.
    case mixed
}
