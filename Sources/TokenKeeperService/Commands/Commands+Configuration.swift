import Foundation
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
                secretSource = try AppSecretLoader(environment: context.environment).load(for: context.configuration)
                    .source
            } catch {
                throw CommandFailure(.configuration, error.description)
            }
            let webhookSecret = try context.webhookSecret()
            let storage = try context.describeStorage()
            Console.out("configuration OK: \(context.configuration.sourcePath ?? "environment only")")
            Console.out("  gateway.url        \(gateway.baseURL)")
            Console.out("  app.key            \(gateway.appKey)")
            Console.out("  app secret         from \(secretSource) (fingerprint \(gateway.appSecret.fingerprint))")
            for line in storage { Console.out(line) }
            let configuration = context.configuration
            if let command = configuration.notify.command {
                Console.out("  notify.command     \(command.joined(separator: " "))")
            }
            if let url = configuration.notify.webhookURL, let webhookSecret {
                // Only scheme and host: many receivers put a secret of their own in the path or query.
                let shown = URLComponents(string: url).map { "\($0.scheme ?? "")://\($0.host ?? "")/…" } ?? "(set)"
                Console.out("  notify.webhook_url \(shown) (signing secret fingerprint \(webhookSecret.fingerprint))")
            }
            if let listen = configuration.callback.listen {
                Console.out("  callback.listen    \(listen) (serves \(configuration.app.redirectURI ?? ""))")
            }
            if let listen = configuration.metrics.listen {
                Console.out("  metrics.listen     \(listen) (/metrics, /healthz, /readyz)")
            }
            return .success
        }
    }

    /// `tokenkeeper authorize-url [--seller S] [--state X]`: the URL a seller
    /// opens to authorize the app. With `--seller`, the state is signed,
    /// single-use and expires (the callback listener checks it); `--state`
    /// passes an opaque value of the caller's own instead.
    public static func authorizeURL(sellerID: String?, state: String?, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let configuration = context.configuration
            guard let sellerID else {
                Console.out(try AuthorizationLinks.url(state: state, configuration: configuration))
                return .success
            }
            if state != nil {
                throw CommandFailure(.usage, "--seller and --state exclude each other: --seller makes a signed state")
            }
            if let missing = AuthorizationLinks.missingSettings(configuration) {
                throw CommandFailure(.configuration, missing.description)
            }
            let now = context.wallClock.now()
            let links = try await context.withAnyStore(creating: true) { store throws(CommandFailure) in
                try await storeCall("reading the state key") {
                    try await AuthorizationLinks.load(store: store, configuration: configuration, now: now)
                }
            }
            guard let url = links.url(for: sellerID, now: now) else {
                throw CommandFailure(.configuration, "the authorization URL could not be made from the configuration")
            }
            Console.out(url)
            return .success
        }
    }
}
