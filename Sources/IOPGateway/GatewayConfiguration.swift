public import TokenKeeperCore

/// Where and as whom the client talks to the IOP gateway.
///
/// The base URL and the API paths are configuration, not code, so the same
/// client serves other marketplaces on the IOP protocol (Lazada uses the same
/// signing and `/auth/token/refresh` under a different host).
public struct GatewayConfiguration: Sendable, Equatable {
    /// The gateway's REST root; API paths are appended to it,
    /// e.g. `https://api-sg.aliexpress.com/rest` + `/auth/token/refresh`.
    public var baseURL: String
    /// The API that rotates a refresh token.
    public var refreshPath: String
    /// The API that exchanges an authorization code.
    public var createPath: String
    /// The app key (`app_key`, also the OAuth `client_id`).
    public var appKey: String
    /// The app secret that signs every request.
    public var appSecret: Secret
    /// `partner_id`, which the vendor's SDKs send to identify themselves.
    public var partnerID: String
    /// How long establishing a connection (TCP and TLS) may take.
    public var connectTimeout: Duration
    /// How long a whole call may take, from the first connection attempt to the
    /// last byte of the answer.
    public var requestTimeout: Duration
    /// Answers larger than this are refused (``IOPFailureCode/responseTooLarge``)
    /// rather than buffered: a token answer is well under a kilobyte.
    public var maxResponseBytes: Int
    /// Connections the client may keep open to the gateway at once: the
    /// number of calls that can be under way together (`refresh.concurrency`).
    public var maxConnections: Int

    /// The real gateway for AliExpress sellers.
    public static let defaultBaseURL = "https://api-sg.aliexpress.com/rest"
    public static let defaultRefreshPath = "/auth/token/refresh"
    public static let defaultCreatePath = "/auth/token/create"
    public static let defaultPartnerID = "tokenkeeper"

    /// - Parameters:
    ///   - baseURL: The gateway's REST root, `http` or `https`, without a trailing API path.
    ///   - appKey: The app key.
    ///   - appSecret: The app secret.
    ///   - partnerID: Sent as `partner_id`.
    ///   - refreshPath: The refresh API's path, signed as the API name.
    ///   - createPath: The create API's path, signed as the API name.
    ///   - connectTimeout: Connection establishment limit.
    ///   - requestTimeout: Whole-call limit.
    ///   - maxResponseBytes: Largest answer body accepted.
    ///   - maxConnections: Calls under way at once, at most.
    public init(
        baseURL: String = GatewayConfiguration.defaultBaseURL, appKey: String, appSecret: Secret,
        partnerID: String = GatewayConfiguration.defaultPartnerID,
        refreshPath: String = GatewayConfiguration.defaultRefreshPath,
        createPath: String = GatewayConfiguration.defaultCreatePath,
        connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(30),
        maxResponseBytes: Int = 1 << 20, maxConnections: Int = 8
    ) {
        self.baseURL = baseURL
        self.refreshPath = refreshPath
        self.createPath = createPath
        self.appKey = appKey
        self.appSecret = appSecret
        self.partnerID = partnerID
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.maxResponseBytes = maxResponseBytes
        self.maxConnections = maxConnections
    }

    /// Checks what can be checked without calling the gateway.
    /// - Throws: A ``FailureClass/configuration`` failure naming the field at fault.
    public func validate() throws(GatewayFailure) {
        _ = try GatewayEndpoint(baseURL: baseURL)
        func problem(_ text: String) -> GatewayFailure {
            GatewayFailure(.configuration, code: IOPFailureCode.invalidConfiguration, message: text)
        }
        for (name, path) in [("refresh path", refreshPath), ("create path", createPath)]
        where !path.hasPrefix("/") || path.contains("?") || path.contains("#") {
            throw problem("gateway \(name) \"\(path)\" must start with \"/\" and hold no query")
        }
        if appKey.isEmpty { throw problem("the app key is empty") }
        if appSecret.isEmpty { throw problem("the app secret is empty") }
        if connectTimeout <= .zero { throw problem("the connect timeout must be positive") }
        if requestTimeout <= .zero { throw problem("the request timeout must be positive") }
        if maxResponseBytes < 1024 { throw problem("the response size limit must be at least 1024 bytes") }
        if maxConnections < 1 { throw problem("the connection limit must be at least 1") }
    }
}
