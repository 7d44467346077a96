import IOPGateway
import TokenKeeperCore

extension Commands {
    /// `tokenkeeper check-config`: validates the configuration and the secret
    /// without touching the gateway or the databases.
    public static func checkConfig(configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let gateway = try context.gatewayConfiguration()
            do throws(GatewayFailure) {
                try gateway.validate()
            } catch {
                throw CommandFailure(.configuration, "configuration error: gateway: \(error.message)")
            }
            let secretSource: AppSecretLoader.Source
            do throws(ConfigurationError) {
                secretSource = try AppSecretLoader(environment: context.environment).load(for: context.configuration).source
            } catch {
                throw CommandFailure(.configuration, error.description)
            }
            Console.out("configuration OK: \(context.configuration.sourcePath ?? "environment only")")
            Console.out("  gateway.url        \(gateway.baseURL)")
            Console.out("  app.key            \(gateway.appKey)")
            Console.out("  app secret         from \(secretSource) (fingerprint \(gateway.appSecret.fingerprint))")
            Console.out("  storage.directory  \(context.configuration.storage.directory)")
            return .success
        }
    }

    /// `tokenkeeper authorize-url`: the URL a seller opens to authorize the app.
    public static func authorizeURL(state: String?, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let configuration = context.configuration
            guard !configuration.app.key.isEmpty else {
                throw CommandFailure(.configuration, ConfigurationError(key: "app.key", problem: "is not set").description)
            }
            guard let redirectURI = configuration.app.redirectURI else {
                throw CommandFailure(
                    .configuration,
                    ConfigurationError(
                        key: "app.redirect_uri", problem: "is not set",
                        remedy: "set it to the callback URL registered with your app").description)
            }
            do throws(GatewayFailure) {
                let url: String
                if let authorizeURL = configuration.gateway.authorizeURL {
                    url = try AuthorizationURL.make(
                        authorizePage: authorizeURL, appKey: configuration.app.key, redirectURI: redirectURI, state: state)
                } else {
                    url = try AuthorizationURL.make(
                        gatewayBaseURL: configuration.gateway.url, appKey: configuration.app.key,
                        redirectURI: redirectURI, state: state)
                }
                Console.out(url)
                return .success
            } catch {
                throw CommandFailure(.configuration, "configuration error: \(error.message)")
            }
        }
    }
}
