public import TokenKeeperCore

/// The page a seller opens to authorize the app: the gateway host's
/// `/oauth/authorize`, which redirects to `redirect_uri` with a one-use `code`
/// for ``IOPGatewayClient/createToken(code:)``.
public enum AuthorizationURL {
    /// Builds
    /// `{scheme}://{gateway host}/oauth/authorize?response_type=code&force_auth=true&redirect_uri=…&client_id=…[&state=…]`.
    ///
    /// The page lives at the root of the gateway's host, not under its REST
    /// path: `https://api-sg.aliexpress.com/rest` gives
    /// `https://api-sg.aliexpress.com/oauth/authorize?…`.
    /// - Parameters:
    ///   - gatewayBaseURL: The gateway's REST root, as configured.
    ///   - appKey: The app key, sent as `client_id`.
    ///   - redirectURI: Where the gateway sends the seller back (registered with the app).
    ///   - state: An opaque value returned with the code; omitted when nil or empty.
    /// - Throws: A ``FailureClass/configuration`` failure when the base URL is unusable.
    public static func make(
        gatewayBaseURL: String, appKey: String, redirectURI: String, state: String? = nil
    ) throws(GatewayFailure) -> String {
        let endpoint = try GatewayEndpoint(baseURL: gatewayBaseURL)
        return endpoint.origin + "/oauth/authorize?" + query(appKey: appKey, redirectURI: redirectURI, state: state)
    }

    /// Builds the same query on an authorization page configured explicitly,
    /// for marketplaces whose page is not on the API host (Lazada's is
    /// `https://auth.lazada.com/oauth/authorize`).
    /// - Parameters:
    ///   - authorizePage: The page's full URL, `http` or `https`, without a query.
    ///   - appKey: The app key, sent as `client_id`.
    ///   - redirectURI: Where the gateway sends the seller back.
    ///   - state: An opaque value returned with the code; omitted when nil or empty.
    /// - Throws: A ``FailureClass/configuration`` failure when the page URL is unusable.
    public static func make(
        authorizePage: String, appKey: String, redirectURI: String, state: String? = nil
    ) throws(GatewayFailure) -> String {
        let endpoint = try GatewayEndpoint(baseURL: authorizePage, name: "authorization page URL")
        return endpoint.origin + endpoint.basePath + "?" + query(appKey: appKey, redirectURI: redirectURI, state: state)
    }

    private static func query(appKey: String, redirectURI: String, state: String?) -> String {
        var query: [(key: String, value: String)] = [
            ("response_type", "code"), ("force_auth", "true"), ("redirect_uri", redirectURI), ("client_id", appKey),
        ]
        if let state, !state.isEmpty { query.append(("state", state)) }
        return PercentEncoding.formEncode(query)
    }
}
