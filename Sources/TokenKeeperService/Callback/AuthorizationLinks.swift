import IOPGateway
import TokenKeeperCore

/// Makes the URLs sellers open to authorize an app again, each with a
/// signed, single-use ``AuthorizationState``: for `authorize-url --seller`,
/// `status`, and every seller event. Each link opens its app's
/// authorization page and comes back to its app's `redirect_uri`.
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

    /// Why no link can be made for `app`, as a configuration error.
    static func missingSettings(
        _ app: TokenKeeperConfiguration.AppSettings, in configuration: TokenKeeperConfiguration
    ) -> ConfigurationError? {
        if app.key.isEmpty {
            return ConfigurationError(key: configuration.keyName("key", of: app), problem: "is not set")
        }
        if app.redirectURI == nil {
            return ConfigurationError(
                key: configuration.keyName("redirect_uri", of: app), problem: "is not set",
                remedy: "set it to the callback URL registered with your app")
        }
        return nil
    }

    /// Why links cannot be made for some app; nil when every app has what
    /// its links need.
    static func missingSettings(_ configuration: TokenKeeperConfiguration) -> ConfigurationError? {
        configuration.apps.lazy.compactMap { missingSettings($0, in: configuration) }.first
    }

    /// The page URL of `app` with `state` (opaque, or nil for none).
    static func url(
        state: String?, app: TokenKeeperConfiguration.AppSettings, configuration: TokenKeeperConfiguration
    ) throws(CommandFailure) -> String {
        if let missing = missingSettings(app, in: configuration) {
            throw CommandFailure(.configuration, missing.description)
        }
        let redirectURI = app.redirectURI ?? ""
        do throws(GatewayFailure) {
            if let page = app.gateway.authorizeURL {
                return try AuthorizationURL.make(
                    authorizePage: page, appKey: app.key, redirectURI: redirectURI, state: state)
            }
            return try AuthorizationURL.make(
                gatewayBaseURL: app.gateway.url, appKey: app.key, redirectURI: redirectURI, state: state)
        } catch {
            throw CommandFailure(.configuration, "configuration error: \(error.message)")
        }
    }

    /// A signed link for `account`, or nil when the settings for its app's
    /// links are missing (events then carry no URL).
    func url(for account: AccountKey, now: Timestamp) -> String? {
        guard let app = configuration.app(named: account.app) else { return nil }
        var random = SystemRandomNumberGenerator()
        let state = AuthorizationState.issue(for: account, at: now, using: &random)
        return try? Self.url(state: signer.encode(state), app: app, configuration: configuration)
    }
}
