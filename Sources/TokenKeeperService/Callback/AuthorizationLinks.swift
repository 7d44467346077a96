import IOPGateway
import TokenKeeperCore

/// Makes the URLs sellers open to authorize the app again, each with a
/// signed, single-use ``AuthorizationState``: for `authorize-url --seller`,
/// `status`, and every seller event.
struct AuthorizationLinks: Sendable {
    let signer: AuthorizationStateSigner
    let configuration: TokenKeeperConfiguration

    /// Reads the state key from keeper.db, creating it on first use.
    static func load(store: any CallbackStateStore, configuration: TokenKeeperConfiguration, now: Timestamp)
        async throws -> AuthorizationLinks
    {
        let key = try await store.key(named: AuthorizationStateSigner.keyName, now: now) {
            AuthorizationStateSigner.makeKeyHex()
        }
        return AuthorizationLinks(signer: AuthorizationStateSigner(keyHex: key), configuration: configuration)
    }

    /// Why no link can be made, as a configuration error.
    static func missingSettings(_ configuration: TokenKeeperConfiguration) -> ConfigurationError? {
        if configuration.app.key.isEmpty {
            return ConfigurationError(key: "app.key", problem: "is not set")
        }
        if configuration.app.redirectURI == nil {
            return ConfigurationError(
                key: "app.redirect_uri", problem: "is not set",
                remedy: "set it to the callback URL registered with your app")
        }
        return nil
    }

    /// The page URL with `state` (opaque, or nil for none).
    static func url(state: String?, configuration: TokenKeeperConfiguration) throws(CommandFailure) -> String {
        if let missing = missingSettings(configuration) {
            throw CommandFailure(.configuration, missing.description)
        }
        let redirectURI = configuration.app.redirectURI ?? ""
        do throws(GatewayFailure) {
            if let page = configuration.gateway.authorizeURL {
                return try AuthorizationURL.make(
                    authorizePage: page, appKey: configuration.app.key, redirectURI: redirectURI, state: state)
            }
            return try AuthorizationURL.make(
                gatewayBaseURL: configuration.gateway.url, appKey: configuration.app.key, redirectURI: redirectURI,
                state: state)
        } catch {
            throw CommandFailure(.configuration, "configuration error: \(error.message)")
        }
    }

    /// A signed link for `sellerID`, or nil when the settings for links are
    /// missing (events then carry no URL).
    func url(for sellerID: String, now: Timestamp) -> String? {
        var random = SystemRandomNumberGenerator()
        let state = AuthorizationState.issue(for: sellerID, at: now, using: &random)
        return try? Self.url(state: signer.encode(state), configuration: configuration)
    }
}
