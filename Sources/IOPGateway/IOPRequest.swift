public import TokenKeeperCore

/// One signed call to the gateway, built as the vendor's Java SDK builds system
/// API calls: `POST {baseURL}{api}` with the system parameters (`app_key`,
/// `timestamp`, `sign_method`, `partner_id`, `sign`) in the query string and the
/// API parameters (`refresh_token`, `code`) in a form-encoded body.
///
/// Building is pure (the timestamp is passed in), so what goes on the wire is
/// tested without a network. The body carries a token: ``description`` shows
/// only its size.
public struct IOPRequest: Sendable, Equatable, CustomStringConvertible {
    /// One HTTP header.
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Always `POST`: it keeps the token out of the URL, and so out of proxy logs.
    public static let method = "POST"
    public static let contentType = "application/x-www-form-urlencoded;charset=UTF-8"
    public static let signMethod = "sha256"

    /// The API name that was signed, e.g. `/auth/token/refresh`.
    public var apiPath: String
    /// The full URL with the system parameters and the signature in the query.
    public var url: String
    public var headers: [Header]
    /// The API parameters, form-encoded. Holds a token or an authorization code.
    public var body: String
    /// The signature, as sent in the query.
    public var signature: String

    public var description: String {
        "\(Self.method) \(url) (body \(body.utf8.count) bytes)"
    }

    /// Builds and signs a call.
    /// - Parameters:
    ///   - apiPath: The API name, e.g. `/auth/token/create`; appended to the base URL and signed.
    ///   - apiParameters: Sent in the body; empty values are neither sent nor signed.
    ///   - configuration: Base URL, app key, secret and partner id.
    ///   - timestamp: The `timestamp` parameter (epoch milliseconds); the gateway
    ///     refuses one too far from its own clock (`IllegalTimestamp`).
    /// - Throws: A ``FailureClass/configuration`` failure when the base URL is unusable.
    public init(
        apiPath: String, apiParameters: [String: String], configuration: GatewayConfiguration,
        timestamp: Timestamp
    ) throws(GatewayFailure) {
        let endpoint = try GatewayEndpoint(baseURL: configuration.baseURL)
        let systemParameters = [
            "app_key": configuration.appKey,
            "timestamp": String(timestamp.millisecondsSince1970),
            "sign_method": Self.signMethod,
            "partner_id": configuration.partnerID,
        ].filter { !$0.value.isEmpty }
        let apiParameters = apiParameters.filter {
            !$0.value.isEmpty && systemParameters[$0.key] == nil && $0.key != IOPSignature.parameterName
        }
        let signature = IOPSignature.sign(
            apiPath: apiPath, parameters: systemParameters.merging(apiParameters) { system, _ in system },
            secret: configuration.appSecret.exposedValue)

        var query = systemParameters.map { (key: $0.key, value: $0.value) }
        query.append((key: IOPSignature.parameterName, value: signature))
        self.apiPath = apiPath
        self.signature = signature
        self.url = endpoint.url(apiPath: apiPath) + "?" + PercentEncoding.formEncode(Self.sortedByKey(query))
        self.body = PercentEncoding.formEncode(Self.sortedByKey(apiParameters.map { (key: $0.key, value: $0.value) }))
        self.headers = [
            Header(name: "Content-Type", value: Self.contentType),
            Header(name: "Accept", value: "application/json"),
            Header(name: "User-Agent", value: "tokenkeeper"),
        ]
    }

    /// `/auth/token/refresh` with `refresh_token`.
    public static func refresh(
        refreshToken: Secret, configuration: GatewayConfiguration, timestamp: Timestamp
    ) throws(GatewayFailure) -> IOPRequest {
        try IOPRequest(
            apiPath: configuration.refreshPath, apiParameters: ["refresh_token": refreshToken.exposedValue],
            configuration: configuration, timestamp: timestamp)
    }

    /// `/auth/token/create` with the authorization `code`.
    public static func createToken(
        code: String, configuration: GatewayConfiguration, timestamp: Timestamp
    ) throws(GatewayFailure) -> IOPRequest {
        try IOPRequest(
            apiPath: configuration.createPath, apiParameters: ["code": code],
            configuration: configuration, timestamp: timestamp)
    }

    /// Byte order, as the signature sorts, so the wire form is deterministic.
    private static func sortedByKey(_ pairs: [(key: String, value: String)]) -> [(key: String, value: String)] {
        pairs.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
    }
}
