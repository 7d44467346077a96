import Configuration
import Foundation
import TokenKeeperCore
import Yams

/// Reads the configuration: the YAML file, overridden key by key by
/// `TOKENKEEPER_*` environment variables (`gateway.url` →
/// `TOKENKEEPER_GATEWAY_URL`), then validates every value.
///
/// swift-configuration does the layering and the environment-variable naming;
/// the file is parsed here with Yams so that a syntax error can name its line
/// and an unknown key (a typo that would otherwise silently fall back to a
/// default) is refused by name.
public struct ConfigurationLoader: Sendable {
    /// Where the file is looked for when neither `--config` nor `TOKENKEEPER_CONFIG` says.
    public static let defaultPath = "/etc/tokenkeeper/config.yaml"

    /// Every key the file may hold; each is documented in `config/config.example.yaml`.
    public static let knownKeys: Set<String> = [
        "gateway.url", "gateway.timeout_seconds", "gateway.connect_timeout_seconds",
        "gateway.refresh_path", "gateway.create_path", "gateway.authorize_url",
        "app.key", "app.secret_file", "app.redirect_uri", "app.api_url", "app.api_urls.*",
        // Each app of `apps:`; `*` stands for a name the user gives (an app,
        // a country, a proxy client; see ``template(of:)``).
        "apps.*.key", "apps.*.secret_file", "apps.*.redirect_uri", "apps.*.authorize_url",
        "apps.*.api_url", "apps.*.api_urls.*",
        "apps.*.max_calls_per_second", "apps.*.gateway.url", "apps.*.gateway.timeout_seconds",
        "apps.*.gateway.connect_timeout_seconds", "apps.*.gateway.refresh_path", "apps.*.gateway.create_path",
        "storage.directory", "storage.backend", "storage.postgres.url", "storage.postgres.password_file",
        "storage.postgres.schema", "storage.postgres.tls", "storage.postgres.tls_ca_file",
        "storage.postgres.heartbeat_seconds", "storage.postgres.takeover_seconds", "storage.postgres.max_connections",
        "storage.postgres.statement_timeout_seconds",
        "refresh.remaining_fraction", "refresh.jitter_fraction", "refresh.final_refresh_margin_seconds",
        "refresh.concurrency", "refresh.max_calls_per_second", "refresh.retry_initial_seconds",
        "refresh.retry_max_seconds", "refresh.configuration_probe_seconds",
        "refresh.change_poll_seconds", "refresh.shutdown_grace_seconds", "refresh.min_interval_seconds",
        "refresh.mass_rejection.sellers", "refresh.mass_rejection.fraction", "refresh.mass_rejection.hold_hours",
        "storage.event_retention_days",
        "notify.command", "notify.command_timeout_seconds", "notify.webhook_url", "notify.webhook_secret_file",
        "notify.webhook_timeout_seconds", "notify.retry_hours", "notify.retry_initial_seconds",
        "notify.retry_max_seconds", "notify.reauth_warning_days", "notify.reauth_check_seconds",
        "callback.listen", "callback.state_ttl_hours",
        "metrics.listen",
        "proxy.listen", "proxy.socket_mode", "proxy.socket_group", "proxy.timeout_seconds", "proxy.refresh_share",
        "proxy.app_daily_calls", "proxy.app_daily_calls.*", "proxy.max_request_bytes",
        "proxy.max_concurrent_calls",
        "proxy.clients.*.key", "proxy.clients.*.secret_file", "proxy.clients.*.apps", "proxy.clients.*.sellers",
        "proxy.clients.*.max_calls_per_second",
        "log.level",
    ]

    /// Keys whose value is a list; in the file a YAML sequence, in the
    /// environment a JSON array.
    static let listKeys: Set<String> = ["notify.command", "proxy.clients.*.apps", "proxy.clients.*.sellers"]

    public var environment: [String: String]
    /// Where the file is looked for by default: ``defaultPath``, or a test's.
    var fallbackPath: String

    public init(environment: [String: String]) {
        self.init(environment: environment, fallbackPath: Self.defaultPath)
    }

    init(environment: [String: String], fallbackPath: String) {
        self.environment = environment
        self.fallbackPath = fallbackPath
    }

    /// The file to read: `--config`, else `TOKENKEEPER_CONFIG`, else the default
    /// path. A path that was named explicitly must exist; the default may be
    /// absent (everything then comes from the environment).
    public func resolvePath(explicit: String?) -> (path: String, mustExist: Bool) {
        if let explicit, !explicit.isEmpty { return (explicit, true) }
        if let fromEnvironment = environment["TOKENKEEPER_CONFIG"], !fromEnvironment.isEmpty {
            return (fromEnvironment, true)
        }
        return (fallbackPath, false)
    }

    /// Loads and validates the configuration.
    /// - Parameter explicitPath: The `--config` option, if given.
    /// - Throws: ``ConfigurationError`` naming the key or file at fault.
    public func load(explicitPath: String? = nil) throws(ConfigurationError) -> TokenKeeperConfiguration {
        let (path, mustExist) = resolvePath(explicit: explicitPath)
        var fileValues: [String: String] = [:]
        var sourcePath: String?
        if FileManager.default.fileExists(atPath: path) {
            fileValues = try Self.readFile(at: path)
            sourcePath = path
        } else if mustExist {
            throw ConfigurationError(
                key: path, problem: "the configuration file does not exist",
                remedy: "create it from config/config.example.yaml or point --config at the right file")
        }
        let reader = ConfigReader(providers: [
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "tokenkeeper"),
            InMemoryProvider(
                name: path,
                values: Dictionary(
                    uniqueKeysWithValues: fileValues.map { key, value in
                        (
                            AbsoluteConfigKey(key.split(separator: ".").map(String.init)),
                            ConfigValue(.string(value), isSecret: false)
                        )
                    })),
        ])
        var values = ValueReader(reader: reader, environment: environment)
        var configuration = TokenKeeperConfiguration()
        configuration.sourcePath = sourcePath
        try values.read(into: &configuration)
        try values.readApps(Self.appNames(in: fileValues), fileValues: fileValues, into: &configuration)
        try values.readProxy(fileValues: fileValues, into: &configuration)
        try Self.validate(configuration)
        return configuration
    }

    /// Parses the YAML file into `section.key → scalar text`, refusing unknown
    /// keys, nesting deeper than two levels and non-scalar values.
    static func readFile(at path: String) throws(ConfigurationError) -> [String: String] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(
                key: path, problem: "cannot read the configuration file (\(error.localizedDescription))",
                remedy: "check that it exists and that this user may read it")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError(
                key: path, problem: "not valid YAML: \(error)", remedy: "fix the syntax at the position named")
        }
        guard let root else { return [:] }  // An empty file sets nothing.
        guard let mapping = root.mapping else {
            throw ConfigurationError(
                key: path,
                problem: "the top level must be a mapping of sections (gateway:, app:, storage:, refresh:, log:)")
        }
        var values: [String: String] = [:]
        for (sectionNode, sectionValue) in mapping {
            let section = sectionNode.string ?? "?"
            guard sectionValue.mapping != nil else {
                if sectionValue.null != nil { continue }
                throw ConfigurationError(
                    key: section, problem: "must be a section of keys, not a single value",
                    remedy: "see config/config.example.yaml")
            }
            try collect(sectionValue, prefix: section, into: &values, path: path)
        }
        return values
    }

    /// The known key (or the start of one) that `key` is an instance of:
    /// the names a user gives replaced by `*` (`apps.ae.key` → `apps.*.key`,
    /// `proxy.clients.orders` → `proxy.clients.*`); a key that matches no
    /// known key is returned as it is. A literal part wins over `*`.
    static func template(of key: String) -> String {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        var best: (parts: ArraySlice<Substring>, wildcards: Int)?
        for known in knownKeys {
            let candidate = known.split(separator: ".", omittingEmptySubsequences: false)
            guard candidate.count >= parts.count else { continue }
            var wildcards = 0
            var matches = true
            for (part, pattern) in zip(parts, candidate) where part != pattern {
                guard pattern == "*" else {
                    matches = false
                    break
                }
                wildcards += 1
            }
            if matches, wildcards < best?.wildcards ?? Int.max {
                best = (candidate.prefix(parts.count), wildcards)
            }
        }
        return best.map { $0.parts.joined(separator: ".") } ?? key
    }

    /// The names under `prefix` (`apps`, `proxy.clients`, `apps.ae.api_urls`)
    /// in the file's keys, sorted.
    static func names(under prefix: String, in values: [String: String]) -> [String] {
        let depth = prefix.split(separator: ".").count
        return Set(
            values.keys.filter { $0.hasPrefix(prefix + ".") }.compactMap {
                $0.split(separator: ".").dropFirst(depth).first
            }
        ).map(String.init).sorted()
    }

    /// The names under `apps:` in the file's keys, in order.
    static func appNames(in values: [String: String]) -> [String] {
        names(under: "apps", in: values)
    }

    /// Walks one section (and its subsections, as `refresh.mass_rejection`
    /// or an app of `apps:`) into dotted keys, refusing any key that is not
    /// known and any app name that is not valid.
    private static func collect(
        _ node: Node, prefix: String, into values: inout [String: String], path: String
    ) throws(ConfigurationError) {
        guard let entries = node.mapping else { return }
        for (keyNode, valueNode) in entries {
            let name = keyNode.string ?? "?"
            let key = "\(prefix).\(name)"
            if prefix == "proxy.clients" || prefix == "proxy.app_daily_calls",
                let problem = AppName.problem(with: name)
            {
                let what = prefix == "proxy.clients" ? "a client name" : "an app name"
                throw ConfigurationError(
                    key: key,
                    problem:
                        "'\(name)' is not \(what): \(problem.replacingOccurrences(of: "an app name", with: "a name"))",
                    remedy: "use 1 to 32 of a-z, 0-9, _ and -, e.g. orders")
            }
            if prefix.hasSuffix(".api_urls"),
                name.utf8.count != 2 || !name.utf8.allSatisfy({ (0x61...0x7A).contains($0) })
            {
                throw ConfigurationError(
                    key: key, problem: "'\(name)' is not a country code",
                    remedy: "name each endpoint by the seller's country in two lower-case letters, e.g. sg or th")
            }
            if prefix == "apps" {
                if let problem = AppName.problem(with: name) {
                    throw ConfigurationError(
                        key: key, problem: "'\(name)' is not an app name: \(problem)",
                        remedy: "name each app with 1 to 32 of a-z, 0-9, _ and -, e.g. ae or lazada_sg")
                }
                guard valueNode.mapping != nil else {
                    throw ConfigurationError(
                        key: key, problem: "must be a section of the app's keys (key, secret_file, redirect_uri, …)",
                        remedy: "see apps: in config/config.example.yaml")
                }
            }
            let template = template(of: key)
            if valueNode.mapping != nil, knownKeys.contains(where: { $0.hasPrefix(template + ".") }) {
                try collect(valueNode, prefix: key, into: &values, path: path)
                continue
            }
            guard knownKeys.contains(template) else {
                throw ConfigurationError(
                    key: key, problem: "unknown key in \(path)",
                    remedy: suggestion(for: template).map { "did you mean \($0)?" }
                        ?? "see config/config.example.yaml for the keys")
            }
            if valueNode.null != nil { continue }
            if listKeys.contains(template), let items = valueNode.sequence {
                var list: [String] = []
                for item in items {
                    guard let scalar = item.scalar else {
                        throw ConfigurationError(key: key, problem: "each item of the list must be a single value")
                    }
                    list.append(scalar.string)
                }
                values[key] = ListValue.encode(list)
                continue
            }
            guard let scalar = valueNode.scalar else {
                throw ConfigurationError(key: key, problem: "must be a single value, not a list or mapping")
            }
            values[key] = scalar.string
        }
    }

    /// The known key closest to a misspelt one, if any is close.
    static func suggestion(for key: String) -> String? {
        var best: (key: String, distance: Int)?
        for candidate in knownKeys.sorted() {
            let distance = editDistance(key, candidate)
            if distance < (best?.distance ?? 4) { best = (candidate, distance) }
        }
        return best?.key
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            previous = current
        }
        return previous[b.count]
    }

    /// Refuses a value that is not an http(s) URL with a host.
    static func requireHTTPURL(_ url: String, key: String, example: String) throws(ConfigurationError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "https" || scheme == "http", components.host?.isEmpty == false
        else {
            throw ConfigurationError(key: key, problem: "'\(url)' is not an http(s) URL", remedy: "use e.g. \(example)")
        }
        // In clear over a network, tokens and events can be read and
        // changed on the way: only a loopback address may be plain http.
        if scheme == "http", !isLoopback(host: components.host ?? "") {
            throw ConfigurationError(
                key: key, problem: "'\(url)' is plain http to a host that is not a loopback address",
                remedy: "use https:// (e.g. \(example)); plain http:// is accepted only for 127.0.0.1, ::1 or localhost"
            )
        }
    }

    /// `localhost`, `127.0.0.0/8` or `::1`.
    static func isLoopback(host: String) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.first == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// A gateway's settings, whose keys start with `prefix` (`gateway`, `apps.ae.gateway`).
    static func validate(_ gateway: TokenKeeperConfiguration.Gateway, prefix: String) throws(ConfigurationError) {
        try requireHTTPURL(gateway.url, key: "\(prefix).url", example: "https://api-sg.aliexpress.com/rest")
        for (key, path) in [
            ("\(prefix).refresh_path", gateway.refreshPath), ("\(prefix).create_path", gateway.createPath),
        ]
        where !path.hasPrefix("/") {
            throw ConfigurationError(key: key, problem: "'\(path)' must start with /")
        }
        try range(gateway.timeoutSeconds, 1...300, "\(prefix).timeout_seconds")
        try range(gateway.connectTimeoutSeconds, 1...300, "\(prefix).connect_timeout_seconds")
    }

    /// Each app of `apps:`: its key, its gateway, its call budget.
    static func validateApps(_ configuration: TokenKeeperConfiguration) throws(ConfigurationError) {
        // `a-b` and `a_b` would read one another's TOKENKEEPER_APPS_A_B_SECRET.
        var variables: [String: AppName] = [:]
        for app in configuration.declaredApps {
            let variable = AppSecretLoader.environmentVariable(of: app.name)
            if let other = variables.updateValue(app.name, forKey: variable) {
                throw ConfigurationError(
                    key: "apps.\(app.name)",
                    problem: "its secret's variable \(variable) is also app \(other)'s",
                    remedy: "rename one of the two apps (- and _ are the same in a variable's name)")
            }
        }
        for app in configuration.declaredApps {
            let prefix = "apps.\(app.name)"
            try require(!app.key.isEmpty, "\(prefix).key", "is not set: every app needs its app key")
            try validate(app.gateway, prefix: "\(prefix).gateway")
            if let rate = app.maxCallsPerSecond {
                try require(
                    rate == 0 || (0.1...10_000).contains(rate), "\(prefix).max_calls_per_second",
                    "must be 0 (no limit) or from 0.1 to 10000")
            }
            if let page = app.gateway.authorizeURL {
                try requireHTTPURL(
                    page, key: "\(prefix).authorize_url", example: "https://auth.lazada.com/oauth/authorize")
            }
        }
    }

    static func validate(_ configuration: TokenKeeperConfiguration) throws(ConfigurationError) {
        try validate(configuration.gateway, prefix: "gateway")
        try validateApps(configuration)
        // Every number has a range: nothing in the file may crash the daemon,
        // spin it, or make it wait for ever.
        let refresh = configuration.refresh
        let gateway = configuration.gateway
        try range(refresh.remainingFraction, 0.01...0.9, "refresh.remaining_fraction")
        try require(
            refresh.jitterFraction >= 0 && refresh.jitterFraction < refresh.remainingFraction,
            "refresh.jitter_fraction",
            "must be at least 0 and below refresh.remaining_fraction, or a refresh could come after expiry")
        try range(refresh.finalRefreshMarginSeconds, 0...86_400, "refresh.final_refresh_margin_seconds")
        try range(Double(refresh.concurrency), 1...256, "refresh.concurrency")
        try require(
            refresh.maxCallsPerSecond == 0 || (0.1...10_000).contains(refresh.maxCallsPerSecond),
            "refresh.max_calls_per_second", "must be 0 (no limit) or from 0.1 to 10000")
        try range(refresh.retryInitialSeconds, 0.1...3600, "refresh.retry_initial_seconds")
        try range(
            refresh.retryMaxSeconds, refresh.retryInitialSeconds...86_400, "refresh.retry_max_seconds",
            "(and at least refresh.retry_initial_seconds)")
        try range(refresh.configurationProbeSeconds, 1...3600, "refresh.configuration_probe_seconds")
        try range(refresh.changePollSeconds, 0.05...5, "refresh.change_poll_seconds")
        try range(refresh.minIntervalSeconds, 1...86_400, "refresh.min_interval_seconds")
        // The slowest app's calls: each app may have a timeout of its own.
        let timeout = configuration.apps.map(\.gateway.timeoutSeconds).max() ?? gateway.timeoutSeconds
        try range(
            refresh.effectiveShutdownGraceSeconds(timeout: timeout), (timeout + 1)...3600,
            "refresh.shutdown_grace_seconds",
            "(a stop must outlast a call that takes the whole gateway timeout_seconds of every app, "
                + "or a rotated token could be lost; leave it out to get the timeout plus 10 s)")
        try range(Double(refresh.massRejectionSellers), 1...1_000_000, "refresh.mass_rejection.sellers")
        try range(refresh.massRejectionFraction, 0.01...1, "refresh.mass_rejection.fraction")
        try range(refresh.massRejectionHoldHours, 0...720, "refresh.mass_rejection.hold_hours")
        try range(configuration.storage.eventRetentionDays, 1...36_500, "storage.event_retention_days")
        try validateOperations(configuration)
        try validateProxy(configuration)
        try require(!configuration.storage.directory.isEmpty, "storage.directory", "must not be empty")
        try validatePostgres(configuration.storage)
        let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        try require(
            levels.contains(configuration.log.level), "log.level", "must be one of \(levels.joined(separator: ", "))")
    }

    static func range(
        _ value: Double, _ allowed: ClosedRange<Double>, _ key: String, _ note: String = ""
    ) throws(ConfigurationError) {
        guard !allowed.contains(value) else { return }
        func text(_ number: Double) -> String {
            number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        }
        throw ConfigurationError(
            key: key,
            problem: "\(text(value)) is out of range: it must be from \(text(allowed.lowerBound)) to "
                + "\(text(allowed.upperBound))" + (note.isEmpty ? "" : " " + note))
    }

    static func require(_ condition: Bool, _ key: String, _ problem: String) throws(ConfigurationError) {
        if !condition { throw ConfigurationError(key: key, problem: problem) }
    }
}

/// Reads each key as text through swift-configuration and converts it here, so
/// that a value of the wrong type is an error naming the key rather than a
/// silent fall-back to the default.
private struct ValueReader {
    let reader: ConfigReader
    let environment: [String: String]

    func text(_ key: String) -> String? {
        reader.string(forKey: ConfigKey(key.split(separator: ".").map(String.init)))
    }

    func source(_ key: String) -> String {
        let variable = "TOKENKEEPER_" + key.uppercased().replacingOccurrences(of: ".", with: "_")
        return environment[variable] != nil ? "\(key) (from \(variable))" : key
    }

    mutating func read(into configuration: inout TokenKeeperConfiguration) throws(ConfigurationError) {
        configuration.gateway.url = string("gateway.url") ?? configuration.gateway.url
        configuration.gateway.timeoutSeconds =
            try double("gateway.timeout_seconds") ?? configuration.gateway.timeoutSeconds
        configuration.gateway.connectTimeoutSeconds =
            try double("gateway.connect_timeout_seconds") ?? configuration.gateway.connectTimeoutSeconds
        configuration.gateway.refreshPath = string("gateway.refresh_path") ?? configuration.gateway.refreshPath
        configuration.gateway.createPath = string("gateway.create_path") ?? configuration.gateway.createPath
        configuration.gateway.authorizeURL = string("gateway.authorize_url")
        configuration.app.key = string("app.key") ?? ""
        configuration.app.secretFile = string("app.secret_file")
        configuration.app.redirectURI = string("app.redirect_uri")
        configuration.app.apiURL = string("app.api_url")
        configuration.storage.directory = string("storage.directory") ?? configuration.storage.directory
        if let backend = string("storage.backend") {
            guard let known = TokenKeeperConfiguration.Storage.Backend(rawValue: backend.lowercased()) else {
                throw ConfigurationError(
                    key: source("storage.backend"), problem: "\"\(backend)\" is not a storage backend",
                    remedy: "use sqlite or postgres")
            }
            configuration.storage.backend = known
        }
        var postgres = configuration.storage.postgres
        postgres.url = string("storage.postgres.url")
        postgres.passwordFile = string("storage.postgres.password_file")
        postgres.schema = string("storage.postgres.schema") ?? postgres.schema
        postgres.tls = string("storage.postgres.tls")?.lowercased()
        postgres.tlsCAFile = string("storage.postgres.tls_ca_file")
        postgres.heartbeatSeconds = try double("storage.postgres.heartbeat_seconds") ?? postgres.heartbeatSeconds
        postgres.takeoverSeconds = try double("storage.postgres.takeover_seconds") ?? postgres.takeoverSeconds
        postgres.maxConnections = try int("storage.postgres.max_connections") ?? postgres.maxConnections
        postgres.statementTimeoutSeconds =
            try double("storage.postgres.statement_timeout_seconds") ?? postgres.statementTimeoutSeconds
        configuration.storage.postgres = postgres
        var refresh = configuration.refresh
        refresh.remainingFraction = try double("refresh.remaining_fraction") ?? refresh.remainingFraction
        refresh.jitterFraction = try double("refresh.jitter_fraction") ?? refresh.jitterFraction
        refresh.finalRefreshMarginSeconds =
            try double("refresh.final_refresh_margin_seconds") ?? refresh.finalRefreshMarginSeconds
        refresh.concurrency = try int("refresh.concurrency") ?? refresh.concurrency
        refresh.maxCallsPerSecond = try double("refresh.max_calls_per_second") ?? refresh.maxCallsPerSecond
        refresh.retryInitialSeconds = try double("refresh.retry_initial_seconds") ?? refresh.retryInitialSeconds
        refresh.retryMaxSeconds = try double("refresh.retry_max_seconds") ?? refresh.retryMaxSeconds
        refresh.configurationProbeSeconds =
            try double("refresh.configuration_probe_seconds") ?? refresh.configurationProbeSeconds
        refresh.changePollSeconds = try double("refresh.change_poll_seconds") ?? refresh.changePollSeconds
        refresh.shutdownGraceSeconds = try double("refresh.shutdown_grace_seconds") ?? refresh.shutdownGraceSeconds
        refresh.minIntervalSeconds = try double("refresh.min_interval_seconds") ?? refresh.minIntervalSeconds
        refresh.massRejectionSellers = try int("refresh.mass_rejection.sellers") ?? refresh.massRejectionSellers
        refresh.massRejectionFraction = try double("refresh.mass_rejection.fraction") ?? refresh.massRejectionFraction
        refresh.massRejectionHoldHours =
            try double("refresh.mass_rejection.hold_hours") ?? refresh.massRejectionHoldHours
        configuration.storage.eventRetentionDays =
            try double("storage.event_retention_days") ?? configuration.storage.eventRetentionDays
        configuration.refresh = refresh
        var notify = configuration.notify
        notify.command = try list("notify.command")
        notify.commandTimeoutSeconds = try double("notify.command_timeout_seconds") ?? notify.commandTimeoutSeconds
        notify.webhookURL = string("notify.webhook_url")
        notify.webhookSecretFile = string("notify.webhook_secret_file")
        notify.webhookTimeoutSeconds = try double("notify.webhook_timeout_seconds") ?? notify.webhookTimeoutSeconds
        notify.retryHours = try double("notify.retry_hours") ?? notify.retryHours
        notify.reauthWarningDays = try double("notify.reauth_warning_days") ?? notify.reauthWarningDays
        notify.retryInitialSeconds = try double("notify.retry_initial_seconds") ?? notify.retryInitialSeconds
        notify.retryMaxSeconds = try double("notify.retry_max_seconds") ?? notify.retryMaxSeconds
        notify.reauthCheckSeconds = try double("notify.reauth_check_seconds") ?? notify.reauthCheckSeconds
        configuration.notify = notify
        configuration.callback.listen = string("callback.listen")
        configuration.callback.stateTTLHours =
            try double("callback.state_ttl_hours") ?? configuration.callback.stateTTLHours
        configuration.metrics.listen = string("metrics.listen")
        configuration.log.level = string("log.level")?.lowercased() ?? configuration.log.level
    }

    /// The `apps:` map (`names` as the file lists them). A configuration has
    /// either the one `app:` or `apps:`, not both: which app `app.key` would
    /// then mean is anybody's guess.
    mutating func readApps(
        _ names: [String], fileValues: [String: String], into configuration: inout TokenKeeperConfiguration
    ) throws(ConfigurationError) {
        configuration.app.apiURLs = apiURLs(under: "app.api_urls", fileValues: fileValues)
        guard !names.isEmpty else { return }
        if let set = ["app.key", "app.secret_file", "app.redirect_uri", "app.api_url"].first(where: {
            string($0) != nil
        }) {
            throw ConfigurationError(
                key: source(set), problem: "app: and apps: are both set",
                remedy: "move the app: section into apps: as one entry (docs/OPERATIONS.md, \"Moving to apps:\")")
        }
        var apps: [TokenKeeperConfiguration.AppSettings] = []
        for text in names {
            guard let name = AppName(rawValue: text) else { continue }  // refused by name when the file was read
            let prefix = "apps.\(text)"
            var app = TokenKeeperConfiguration.AppSettings(name: name, gateway: configuration.gateway)
            app.key = string("\(prefix).key") ?? ""
            app.secretFile = string("\(prefix).secret_file")
            app.redirectURI = string("\(prefix).redirect_uri")
            app.maxCallsPerSecond = try double("\(prefix).max_calls_per_second")
            app.apiURL = string("\(prefix).api_url")
            app.apiURLs = apiURLs(under: "\(prefix).api_urls", fileValues: fileValues)
            var gateway = app.gateway
            gateway.url = string("\(prefix).gateway.url") ?? gateway.url
            gateway.timeoutSeconds = try double("\(prefix).gateway.timeout_seconds") ?? gateway.timeoutSeconds
            gateway.connectTimeoutSeconds =
                try double("\(prefix).gateway.connect_timeout_seconds") ?? gateway.connectTimeoutSeconds
            gateway.refreshPath = string("\(prefix).gateway.refresh_path") ?? gateway.refreshPath
            gateway.createPath = string("\(prefix).gateway.create_path") ?? gateway.createPath
            // The top-level authorize page belongs to the top-level gateway:
            // an app on another gateway (Lazada's) gets its own or none.
            gateway.authorizeURL =
                string("\(prefix).authorize_url")
                ?? (gateway.url == configuration.gateway.url ? configuration.gateway.authorizeURL : nil)
            app.gateway = gateway
            apps.append(app)
        }
        configuration.declaredApps = apps
    }

    /// `…api_urls.<country>` as the file names them (lower-case country codes).
    func apiURLs(under prefix: String, fileValues: [String: String]) -> [String: String] {
        var urls: [String: String] = [:]
        for country in ConfigurationLoader.names(under: prefix, in: fileValues) {
            if let url = string("\(prefix).\(country)") { urls[country] = url }
        }
        return urls
    }

    /// `proxy.*`, its clients (`names` as the file lists them) and daily caps.
    mutating func readProxy(fileValues: [String: String], into configuration: inout TokenKeeperConfiguration)
        throws(ConfigurationError)
    {
        var proxy = configuration.proxy
        proxy.listen = string("proxy.listen")
        if let mode = string("proxy.socket_mode") {
            guard let value = UInt16(mode, radix: 8), value <= 0o777 else {
                throw ConfigurationError(
                    key: source("proxy.socket_mode"), problem: "'\(mode)' is not a file mode in octal",
                    remedy: "write e.g. \"0660\" (owner and group read and write)")
            }
            proxy.socketMode = value
        }
        proxy.socketGroup = string("proxy.socket_group")
        proxy.timeoutSeconds = try double("proxy.timeout_seconds") ?? proxy.timeoutSeconds
        proxy.refreshShare = try double("proxy.refresh_share") ?? proxy.refreshShare
        proxy.maxRequestBytes = try int("proxy.max_request_bytes") ?? proxy.maxRequestBytes
        proxy.maxConcurrentCalls = try int("proxy.max_concurrent_calls") ?? proxy.maxConcurrentCalls
        proxy.appDailyCalls = try double("proxy.app_daily_calls")
        for name in ConfigurationLoader.names(under: "proxy.app_daily_calls", in: fileValues) {
            guard let app = AppName(rawValue: name) else { continue }  // refused by name when the file was read
            proxy.appDailyCallsByApp[app] = try double("proxy.app_daily_calls.\(name)")
        }
        proxy.clients = []
        for name in ConfigurationLoader.names(under: "proxy.clients", in: fileValues) {
            let prefix = "proxy.clients.\(name)"
            var client = TokenKeeperConfiguration.ProxyClient(name: name)
            client.key = string("\(prefix).key") ?? ""
            client.secretFile = string("\(prefix).secret_file")
            if let apps = try list("\(prefix).apps") {
                var names: [AppName] = []
                for text in apps {
                    guard let app = AppName(rawValue: text) else {
                        throw ConfigurationError(
                            key: source("\(prefix).apps"), problem: "'\(text)' is not an app name",
                            remedy: "list the names of apps: (or default for a single app:)")
                    }
                    names.append(app)
                }
                client.apps = names
            }
            client.sellers = try list("\(prefix).sellers")
            client.maxCallsPerSecond = try double("\(prefix).max_calls_per_second")
            proxy.clients.append(client)
        }
        configuration.proxy = proxy
    }

    func string(_ key: String) -> String? {
        guard let value = text(key)?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    func double(_ key: String) throws(ConfigurationError) -> Double? {
        guard let value = string(key) else { return nil }
        guard let number = Double(value), number.isFinite else {
            throw ConfigurationError(key: source(key), problem: "'\(value)' is not a number")
        }
        return number
    }

    /// A list: the file's YAML sequence (stored as a JSON array), a JSON
    /// array from the environment, or one word alone (a program without arguments).
    func list(_ key: String) throws(ConfigurationError) -> [String]? {
        guard let value = string(key) else { return nil }
        if let list = ListValue.decode(value) {
            guard !list.isEmpty, !list[0].isEmpty else {
                throw ConfigurationError(
                    key: source(key), problem: "the list is empty", remedy: "name the program first")
            }
            return list
        }
        guard !value.contains(where: \.isWhitespace) else {
            throw ConfigurationError(
                key: source(key), problem: "'\(value)' is one string with spaces; it is not split (no shell runs it)",
                remedy: "write it as a list: [\"/usr/local/bin/notify-team\", \"--channel\", \"ops\"]")
        }
        return [value]
    }

    func int(_ key: String) throws(ConfigurationError) -> Int? {
        guard let value = string(key) else { return nil }
        guard let number = Int(value) else {
            throw ConfigurationError(key: source(key), problem: "'\(value)' is not a whole number")
        }
        return number
    }
}

/// A list value carried through swift-configuration as JSON array text.
enum ListValue {
    static func encode(_ list: [String]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: list, options: [.withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func decode(_ text: String) -> [String]? {
        guard text.hasPrefix("["), let data = text.data(using: .utf8),
            let list = try? JSONSerialization.jsonObject(with: data) as? [String]
        else { return nil }
        return list
    }
}

extension ConfigurationLoader {
    /// The operator's loop: notifications, the callback and metrics listeners.
    static func validateOperations(_ configuration: TokenKeeperConfiguration) throws(ConfigurationError) {
        let notify = configuration.notify
        try range(notify.commandTimeoutSeconds, 1...600, "notify.command_timeout_seconds")
        try range(notify.webhookTimeoutSeconds, 1...300, "notify.webhook_timeout_seconds")
        try range(notify.retryHours, 1...720, "notify.retry_hours")
        try range(notify.reauthWarningDays, 0...365, "notify.reauth_warning_days")
        try range(notify.retryInitialSeconds, 0.1...3600, "notify.retry_initial_seconds")
        try range(
            notify.retryMaxSeconds, notify.retryInitialSeconds...86_400, "notify.retry_max_seconds",
            "(and at least notify.retry_initial_seconds)")
        try range(notify.reauthCheckSeconds, 1...3600, "notify.reauth_check_seconds")
        try range(configuration.callback.stateTTLHours, 0.1...720, "callback.state_ttl_hours")
        if let command = notify.command {
            let program = command[0]
            try require(
                program.hasPrefix("/"), "notify.command",
                "the program '\(program)' must be an absolute path (a service's PATH is short)")
            try require(
                FileManager.default.isExecutableFile(atPath: program), "notify.command",
                "\(program) does not exist or is not executable by this user")
        }
        if let url = notify.webhookURL {
            try requireHTTPURL(url, key: "notify.webhook_url", example: "https://hooks.example.com/tokenkeeper")
        }
        if let listen = configuration.callback.listen {
            _ = try ListenAddress(listen, key: "callback.listen")
            // One listener serves every app: the path of each app's
            // redirect_uri picks the app.
            var paths: [String: AppName] = [:]
            for app in configuration.apps {
                let key = configuration.keyName("redirect_uri", of: app)
                guard let redirect = app.redirectURI, let path = URLComponents(string: redirect)?.path, !path.isEmpty
                else {
                    throw ConfigurationError(
                        key: key, problem: "callback.listen is set but \(key) is not a URL with a path",
                        remedy: "set \(key) to the callback URL registered with the app, "
                            + "e.g. https://tokens.example.com/\(app.name == .default ? "aliexpress" : app.name.rawValue)/callback"
                    )
                }
                if let other = paths.updateValue(app.name, forKey: path) {
                    throw ConfigurationError(
                        key: key, problem: "has the same path (\(path)) as the redirect_uri of app \(other)",
                        remedy: "give each app a callback path of its own, e.g. /callback/\(app.name)")
                }
            }
        }
        if let listen = configuration.metrics.listen {
            _ = try ListenAddress(listen, key: "metrics.listen")
        }
        if let callback = configuration.callback.listen, let metrics = configuration.metrics.listen,
            let a = try? ListenAddress(callback, key: ""), let b = try? ListenAddress(metrics, key: ""), a == b
        {
            throw ConfigurationError(
                key: "metrics.listen", problem: "is the same address as callback.listen",
                remedy: "give each listener its own port")
        }
    }
}

/// `HOST:PORT` of a listener (`[::1]:9464` for IPv6).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(_ text: String, key: String) throws(ConfigurationError) {
        let remedy = "write HOST:PORT, e.g. 127.0.0.1:9464"
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ConfigurationError(key: key, problem: "'\(text)' is not HOST:PORT", remedy: remedy)
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ConfigurationError(key: key, problem: "'\(text)' has no port", remedy: remedy)
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (1...65_535).contains(port) else {
            throw ConfigurationError(key: key, problem: "'\(portText)' is not a port from 1 to 65535", remedy: remedy)
        }
        if host.isEmpty { host = "127.0.0.1" }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
