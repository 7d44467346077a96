/// How a command ended: the process exit code (sysexits-style) after the
/// command has printed what it had to say.
public struct CommandOutcome: Sendable, Equatable {
    public var exitCode: Int32

    public init(exitCode: Int32) { self.exitCode = exitCode }

    public static let success = CommandOutcome(exitCode: 0)
    /// Refused or failed (unknown seller, a refused import line, no valid token).
    public static let failure = CommandOutcome(exitCode: 1)
    /// EX_USAGE: the arguments are wrong.
    public static let usage = CommandOutcome(exitCode: 64)
    /// EX_UNAVAILABLE: the gateway could not be reached.
    public static let unavailable = CommandOutcome(exitCode: 69)
    /// EX_CONFIG: the configuration is wrong.
    public static let configuration = CommandOutcome(exitCode: 78)
}

/// The version printed by `tokenkeeper --version`.
public enum TokenKeeperVersion {
    public static let current = "0.2.0"
}

/// One seller given on the command line to `tokenkeeper import`.
public struct ImportRequest: Sendable {
    /// `--app`: the app the seller belongs to; nil for the configuration's only app.
    public var app: String?
    public var sellerID: String
    public var refreshToken: RefreshTokenSource
    public var accessToken: String?
    public var expireTime: Int64?
    public var refreshTokenValidTime: Int64?
    /// `--replace`: overwrite a seller tokenkeeper already manages.
    public var replace: Bool

    public init(
        sellerID: String, refreshToken: RefreshTokenSource, accessToken: String?, expireTime: Int64?,
        refreshTokenValidTime: Int64?, replace: Bool = false, app: String? = nil
    ) {
        self.app = app
        self.sellerID = sellerID
        self.refreshToken = refreshToken
        self.accessToken = accessToken
        self.expireTime = expireTime
        self.refreshTokenValidTime = refreshTokenValidTime
        self.replace = replace
    }
}

/// Where `import` reads a single seller's refresh token.
public enum RefreshTokenSource: Sendable {
    /// `--refresh-token TOKEN`: works, but every local user can read it.
    case argument(String)
    /// `--refresh-token-file F` (`-` for stdin).
    case file(String)
}
