/// Error codes as they appear in ``TokenKeeperCore/GatewayFailure/code``: the
/// gateway's own, and ours for failures below the IOP protocol.
///
/// Our codes are stored in `status_reason`-adjacent columns and events, so they
/// are spelled like the gateway's (UpperCamelCase) and never change.
public enum IOPFailureCode {
    // MARK: The gateway's codes that decide a class

    /// The refresh token is invalid or expired: the seller must authorize again.
    public static let illegalRefreshToken = "IllegalRefreshToken"
    /// The authorization type is not supported: the seller must authorize again.
    public static let authTypeUnsupported = "AUTH_TYPE_UNSUPPORTED"
    /// Wrong signature, most often a wrong app secret.
    public static let incompleteSignature = "IncompleteSignature"
    public static let invalidAppKey = "InvalidAppKey"
    public static let missingAppKey = "MissingAppKey"
    public static let invalidApiPath = "InvalidApiPath"
    public static let missingParameter = "MissingParameter"
    /// Our clock is too far from the gateway's.
    public static let illegalTimestamp = "IllegalTimestamp"
    public static let apiCallLimit = "ApiCallLimit"
    public static let appCallLimit = "AppCallLimit"
    public static let serviceTimeout = "ServiceTimeout"

    // MARK: Ours

    /// No connection could be made (refused, reset, unreachable, DNS).
    public static let connectionFailed = "ConnectionFailed"
    /// The TLS handshake or the TLS session failed.
    public static let tlsFailed = "TLSFailed"
    /// The connect timeout or the whole-request deadline passed.
    public static let timeout = "Timeout"
    /// The call was cancelled (the daemon is stopping).
    public static let cancelled = "Cancelled"
    /// The body is JSON-like but not what the protocol promises (truncated,
    /// not an object, a success without tokens).
    public static let malformedResponse = "MalformedResponse"
    /// The body is not JSON at all (an HTML error page from a proxy).
    public static let nonJSONResponse = "NonJSONResponse"
    /// The body exceeded ``GatewayConfiguration/maxResponseBytes``.
    public static let responseTooLarge = "ResponseTooLarge"
    /// The refresh token handed to the client was empty; nothing was sent.
    public static let missingRefreshToken = "MissingRefreshToken"
    /// The authorization code handed to the client was empty; nothing was sent.
    public static let missingAuthorizationCode = "MissingAuthorizationCode"
    /// Our gateway settings cannot work (bad base URL, empty app key).
    public static let invalidConfiguration = "InvalidGatewayConfiguration"

    /// `HTTP503` and the like: an HTTP status without an IOP error in the body.
    public static func httpStatus(_ status: Int) -> String { "HTTP\(status)" }
}
