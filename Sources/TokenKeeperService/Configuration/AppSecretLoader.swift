import Foundation
public import TokenKeeperCore

/// Finds an app's secret, in order: systemd's credential (`app_secret`, or
/// `app_secret_<name>` for an app of `apps:`), the file its `secret_file`
/// names, the variable `TOKENKEEPER_APP_SECRET` (`TOKENKEEPER_APPS_<NAME>_SECRET`).
/// The secret is never printed.
public struct AppSecretLoader: Sendable {
    public var environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
    }

    /// Where the secret came from, for messages (never the secret itself).
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        case credential(path: String)
        case file(key: String, path: String)
        case environment(variable: String)

        public var description: String {
            switch self {
            case .credential(let path): "systemd credential \(path)"
            case .file(let key, let path): "\(key) \(path)"
            case .environment(let variable): variable
            }
        }
    }

    /// The single app's secret (`app:`), or the first app's of `apps:`.
    public func load(for configuration: TokenKeeperConfiguration) throws(ConfigurationError) -> (
        secret: Secret, source: Source
    ) {
        guard let app = configuration.apps.first else {
            throw ConfigurationError(key: "apps", problem: "no app is configured")
        }
        return try load(for: app, in: configuration)
    }

    /// The names an app's secret is looked for under: its systemd
    /// credential and its environment variable. The app `default` of an
    /// `apps:` map (a single-app setup moved to `apps:`) also takes the single
    /// app's names, so that the unit's `LoadCredential=app_secret:…` still serves it.
    public static func secretNames(
        of app: TokenKeeperConfiguration.AppSettings, in configuration: TokenKeeperConfiguration
    ) -> (credentials: [String], variables: [String]) {
        let single = (credentials: ["app_secret"], variables: ["TOKENKEEPER_APP_SECRET"])
        guard configuration.declaresApps else { return single }
        let own = (["app_secret_\(app.name)"], [environmentVariable(of: app.name)])
        guard app.name == .default else { return own }
        return (own.0 + single.credentials, own.1 + single.variables)
    }

    /// `TOKENKEEPER_APPS_<NAME>_SECRET`, the name upper-cased with `_` for `-`.
    public static func environmentVariable(of app: AppName) -> String {
        "TOKENKEEPER_APPS_\(app.rawValue.uppercased().replacingOccurrences(of: "-", with: "_"))_SECRET"
    }

    /// The secret of `app`.
    public func load(for app: TokenKeeperConfiguration.AppSettings, in configuration: TokenKeeperConfiguration)
        throws(ConfigurationError) -> (secret: Secret, source: Source)
    {
        let (credentials, variables) = Self.secretNames(of: app, in: configuration)
        let fileKey = configuration.keyName("secret_file", of: app)
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            for credential in credentials {
                let path = directory + "/" + credential
                guard FileManager.default.fileExists(atPath: path) else { continue }
                // systemd lays credentials down with safe modes; no mode check.
                return (
                    try Self.readSecretFile(path, key: "\(credential) credential", checkMode: false),
                    .credential(path: path)
                )
            }
        }
        if let path = app.secretFile {
            return (try Self.readSecretFile(path, key: fileKey, checkMode: true), .file(key: fileKey, path: path))
        }
        for variable in variables {
            guard let value = environment[variable] else { continue }
            let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty else {
                throw ConfigurationError(key: variable, problem: "is empty", remedy: "set it to the app secret")
            }
            return (Secret(trimmed), .environment(variable: variable))
        }
        let credential = credentials[0]
        let variable = variables[0]
        throw ConfigurationError(
            key: fileKey,
            problem: "no app secret is configured" + (configuration.declaresApps ? " for app \(app.name)" : ""),
            remedy: "set \(fileKey) to a file holding the app secret (mode 0600), "
                + "use systemd LoadCredential=\(credential):PATH, or set \(variable)")
    }

    /// Reads a secret file: it must exist, be UTF-8 and not empty, and (for a
    /// file of the operator's, `checkMode`) not be open to other users.
    static func readSecretFile(
        _ path: String, key: String, checkMode: Bool, what: String = "the app secret"
    ) throws(ConfigurationError) -> Secret {
        // The file a link leads to is the one whose mode matters (stat, not lstat).
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: target) else {
            throw ConfigurationError(
                key: key, problem: "\(path) does not exist or cannot be reached",
                remedy: "create it with \(what) and chmod 600 it")
        }
        let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        if checkMode && mode & 0o007 != 0 {
            throw ConfigurationError(
                key: key, problem: "\(path) is readable or writable by other users",
                remedy: "chmod 600 \(path) (or 640 with the daemon's group)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(
                key: key, problem: "\(path) cannot be read by this user", remedy: "check its owner and mode")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(key: key, problem: "\(path) is not UTF-8 text")
        }
        let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !secret.isEmpty else {
            throw ConfigurationError(key: key, problem: "\(path) is empty", remedy: "write \(what) into it")
        }
        return Secret(secret)
    }
}

extension AppSecretLoader {
    /// The webhook's signing key: systemd's credential `webhook_secret`, else
    /// the file named by `notify.webhook_secret_file`. Nil when no webhook is
    /// configured; an error when one is and has no key.
    public func webhookSecret(for configuration: TokenKeeperConfiguration) throws(ConfigurationError) -> Secret? {
        guard configuration.notify.webhookURL != nil else { return nil }
        let what = "the webhook signing secret"
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            let path = directory + "/webhook_secret"
            if FileManager.default.fileExists(atPath: path) {
                return try Self.checkedWebhookSecret(
                    Self.readSecretFile(path, key: "webhook_secret credential", checkMode: false, what: what),
                    key: "webhook_secret credential")
            }
        }
        if let path = configuration.notify.webhookSecretFile {
            return try Self.checkedWebhookSecret(
                Self.readSecretFile(path, key: "notify.webhook_secret_file", checkMode: true, what: what),
                key: "notify.webhook_secret_file")
        }
        throw ConfigurationError(
            key: "notify.webhook_secret_file", problem: "notify.webhook_url is set but no signing secret is configured",
            remedy: "put a random secret in a file (mode 0600) and name it in notify.webhook_secret_file, "
                + "or use systemd LoadCredential=webhook_secret:PATH")
    }

    /// A secret that starts with `whsec_` is a Standard Webhooks key: the
    /// rest must be base64 (of at least 16 bytes, as the standard asks).
    static func checkedWebhookSecret(_ secret: Secret, key: String) throws(ConfigurationError) -> Secret {
        if secret.exposedValue.hasPrefix(WebhookSigning.standardPrefix), WebhookSigning.key(for: secret) == nil {
            throw ConfigurationError(
                key: key, problem: "starts with whsec_ but the rest is not base64 of at least 16 bytes",
                remedy: "use a key as Standard Webhooks makes them (whsec_ and base64 of 24 to 64 random bytes), "
                    + "or a secret without the whsec_ prefix, which is used as its bytes")
        }
        return secret
    }
}

extension AppSecretLoader {
    /// The shortest client secret taken: a guessable one would let anyone
    /// on the host call as the client.
    static let minimumProxySecretLength = 16

    /// A proxy client's secret: systemd's credential `proxy_<name>`, else the
    /// file its `secret_file` names.
    public func proxyClientSecret(for client: TokenKeeperConfiguration.ProxyClient) throws(ConfigurationError) -> Secret
    {
        let key = "proxy.clients.\(client.name).secret_file"
        let what = "the client's secret"
        var found: (secret: Secret, key: String)?
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            let path = directory + "/proxy_\(client.name)"
            if FileManager.default.fileExists(atPath: path) {
                let credential = "proxy_\(client.name) credential"
                found = (try Self.readSecretFile(path, key: credential, checkMode: false, what: what), credential)
            }
        }
        if found == nil, let path = client.secretFile {
            found = (try Self.readSecretFile(path, key: key, checkMode: true, what: what), key)
        }
        guard let found else {
            throw ConfigurationError(
                key: key, problem: "no secret is configured for proxy client \(client.name)",
                remedy: "run tokenkeeper proxy-client new \(client.name) and follow what it prints "
                    + "(a secret file of mode 0600, or systemd LoadCredential=proxy_\(client.name):PATH)")
        }
        guard found.secret.exposedValue.count >= Self.minimumProxySecretLength else {
            throw ConfigurationError(
                key: found.key, problem: "the secret is shorter than \(Self.minimumProxySecretLength) characters",
                remedy: "use the one tokenkeeper proxy-client new \(client.name) prints")
        }
        return found.secret
    }
}
