import Foundation
import IOPGateway
import TokenKeeperCore

extension Commands {
    /// `tokenkeeper check-config`: validates the configuration and the secret
    /// without touching the gateway or the databases.
    public static func checkConfig(configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let configuration = context.configuration
            let gateways = try context.gatewayConfigurations()
            var appLines: [String] = []
            for app in configuration.apps {
                guard let gateway = gateways[app.name] else { continue }
                let secretSource: AppSecretLoader.Source
                do throws(ConfigurationError) {
                    secretSource = try AppSecretLoader(environment: context.environment).load(
                        for: app, in: configuration
                    ).source
                } catch {
                    throw CommandFailure(.configuration, error.description)
                }
                let secret = "from \(secretSource) (fingerprint \(gateway.appSecret.fingerprint))"
                if configuration.declaresApps {
                    let rate = app.maxCallsPerSecond ?? configuration.refresh.maxCallsPerSecond
                    appLines += [
                        "  app \(app.name)",
                        "    key              \(gateway.appKey)",
                        "    secret           \(secret)",
                        "    gateway.url      \(gateway.baseURL)",
                        "    calls per second \(rate == 0 ? "unlimited" : "\(rate)")",
                    ]
                    if let redirect = app.redirectURI { appLines.append("    redirect_uri     \(redirect)") }
                } else {
                    appLines += [
                        "  gateway.url        \(gateway.baseURL)",
                        "  app.key            \(gateway.appKey)",
                        "  app secret         \(secret)",
                    ]
                }
            }
            let webhookSecret = try context.webhookSecret()
            let storage = try context.describeStorage()
            Console.out("configuration OK: \(configuration.sourcePath ?? "environment only")")
            if configuration.declaresApps { Console.out("  apps               \(configuration.apps.count)") }
            for line in appLines { Console.out(line) }
            for line in storage { Console.out(line) }
            if let command = configuration.notify.command {
                Console.out("  notify.command     \(command.joined(separator: " "))")
            }
            if let url = configuration.notify.webhookURL, let webhookSecret {
                // Only scheme and host: many receivers put a secret of their own in the path or query.
                let shown = URLComponents(string: url).map { "\($0.scheme ?? "")://\($0.host ?? "")/…" } ?? "(set)"
                Console.out("  notify.webhook_url \(shown) (signing secret fingerprint \(webhookSecret.fingerprint))")
            }
            if let listen = configuration.callback.listen {
                let served = configuration.apps.compactMap(\.redirectURI).joined(separator: ", ")
                Console.out("  callback.listen    \(listen) (serves \(served))")
            }
            if let listen = configuration.metrics.listen {
                Console.out("  metrics.listen     \(listen) (/metrics, /healthz, /readyz)")
            }
            if let listen = configuration.proxy.listen {
                Console.out("  proxy.listen       \(listen)")
                let clients = try ProxySetup.clients(of: context)
                for client in clients {
                    let apps = client.apps.map { $0.map(\.rawValue).sorted().joined(separator: ",") } ?? "every app"
                    let sellers = client.sellers.map { "\($0.count) sellers" } ?? "every seller"
                    Console.out(
                        "    client \(client.name): key \(client.key), secret fingerprint \(client.secret.fingerprint), "
                            + "\(apps), \(sellers)")
                }
                for app in configuration.apps {
                    let urls = app.apiURLs.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                    let shown = ([app.apiURL ?? (app.apiURLs.isEmpty ? app.gateway.url : nil)].compactMap { $0 } + urls)
                        .joined(separator: ", ")
                    Console.out("    app \(app.name) forwards to \(shown)")
                }
            }
            return .success
        }
    }

    /// `tokenkeeper authorize-url [--seller S] [--state X]`: the URL a seller
    /// opens to authorize the app. With `--seller`, the state is signed,
    /// single-use and expires (the callback listener checks it); `--state`
    /// passes an opaque value of the caller's own instead.
    public static func authorizeURL(sellerID: String?, app appText: String? = nil, state: String?, configPath: String?)
        async -> CommandOutcome
    {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let configuration = context.configuration
            let named = try AccountResolution.appName(appText)
            guard let sellerID else {
                let app = try context.app(named: named)
                Console.out(try AuthorizationLinks.url(state: state, app: app, configuration: configuration))
                return .success
            }
            if state != nil {
                throw CommandFailure(.usage, "--seller and --state exclude each other: --seller makes a signed state")
            }
            let now = context.wallClock.now()
            let (links, account) = try await context.withAnyStore(creating: true) { store throws(CommandFailure) in
                // The seller's app: named, or the one app it is enrolled
                // under, or the only app (a seller new to tokenkeeper).
                var app = named
                if app == nil {
                    let keys = try await storeCall("looking up seller \(sellerID)") {
                        try await store.accountKeys(sellerID: sellerID)
                    }
                    if keys.count > 1 {
                        _ = try await AccountResolution.key(sellerID: sellerID, app: nil, in: store)
                    }
                    app = keys.first?.app
                }
                let settings = try context.app(named: app)
                if let missing = AuthorizationLinks.missingSettings(settings, in: configuration) {
                    throw CommandFailure(.configuration, missing.description)
                }
                let links = try await storeCall("reading the state key") {
                    try await AuthorizationLinks.load(store: store, configuration: configuration, now: now)
                }
                return (links, AccountKey(app: settings.name, sellerID: sellerID))
            }
            guard let url = links.url(for: account, now: now) else {
                throw CommandFailure(.configuration, "the authorization URL could not be made from the configuration")
            }
            Console.out(url)
            return .success
        }
    }
}
