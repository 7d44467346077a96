public import TokenKeeperCore

/// Everything tokenkeeper reads from `config.yaml` and `TOKENKEEPER_*`
/// environment variables, validated. Every key is documented in
/// `config/config.example.yaml`.
public struct TokenKeeperConfiguration: Sendable, Equatable {
    public struct Gateway: Sendable, Equatable {
        /// `gateway.url`: the IOP REST endpoint; API paths are appended to it.
        public var url: String = "https://api-sg.aliexpress.com/rest"
        /// `gateway.timeout_seconds`: the whole request, connect included.
        public var timeoutSeconds: Double = 30
        /// `gateway.connect_timeout_seconds`.
        public var connectTimeoutSeconds: Double = 10
        /// `gateway.refresh_path` and `gateway.create_path`: kept in
        /// configuration so other IOP marketplaces (Lazada) can be served.
        public var refreshPath: String = "/auth/token/refresh"
        public var createPath: String = "/auth/token/create"
        /// `gateway.authorize_url`: where sellers authorize; by default the
        /// gateway's host with `/oauth/authorize`.
        public var authorizeURL: String?
    }

    public struct App: Sendable, Equatable {
        /// `app.key`: the app key of the AliExpress Open Platform app.
        public var key: String = ""
        /// `app.secret_file`: a file holding the app secret (mode 0600 or 0640).
        public var secretFile: String?
        /// `app.redirect_uri`: the OAuth callback registered with the app.
        public var redirectURI: String?
        /// `app.api_url` and `app.api_urls.<country>`: where the signing
        /// proxy forwards business calls (``AppSettings/apiURL``).
        public var apiURL: String?
        public var apiURLs: [String: String] = [:]
    }

    /// One app whose sellers the daemon keeps: an entry of `apps:`, or the
    /// single `app:` (with the top-level `gateway:`) as ``AppName/default``.
    public struct AppSettings: Sendable, Equatable {
        public var name: AppName
        /// `apps.<name>.key`.
        public var key: String = ""
        /// `apps.<name>.secret_file` (else the credential `app_secret_<name>`
        /// or `TOKENKEEPER_APPS_<NAME>_SECRET`).
        public var secretFile: String?
        /// `apps.<name>.redirect_uri`: its path picks the app at the callback.
        public var redirectURI: String?
        /// `apps.<name>.max_calls_per_second`: this app's own call budget; nil
        /// means `refresh.max_calls_per_second`.
        public var maxCallsPerSecond: Double?
        /// `apps.<name>.gateway.*` over the top-level `gateway:` key by key;
        /// `apps.<name>.authorize_url` is its `authorizeURL`.
        public var gateway: Gateway
        /// `apps.<name>.api_url`: where the signing proxy forwards this app's
        /// business calls (the REST endpoint, ending in `/rest`; `/sync` is
        /// its sibling); nil means the gateway's URL.
        public var apiURL: String?
        /// `apps.<name>.api_urls.<country>`: Lazada's endpoint per country,
        /// chosen by the seller's country (``apiURL`` for a country not listed).
        public var apiURLs: [String: String] = [:]

        /// The REST endpoint for a seller of `country` (lower-case ISO code):
        /// its country's, else ``apiURL``, else the gateway's when no country
        /// list is given; nil when a list is given and neither it nor
        /// ``apiURL`` serves the country.
        public func apiURL(country: String?) -> String? {
            if let country, let url = apiURLs[country.lowercased()] { return url }
            if let apiURL { return apiURL }
            return apiURLs.isEmpty ? gateway.url : nil
        }

        public init(name: AppName, gateway: Gateway) {
            self.name = name
            self.gateway = gateway
        }

        /// The configuration key of one of this app's settings, for messages:
        /// `app.key` for the single app, `apps.NAME.key` for a declared one.
        public func keyName(_ setting: String, declared: Bool) -> String {
            declared ? "apps.\(name).\(setting)" : "app.\(setting)"
        }
    }

    public struct Storage: Sendable, Equatable {
        /// `storage.directory`: holds keeper.db, tokens.db and the lock file.
        public var directory: String = "/var/lib/tokenkeeper"
        /// `storage.event_retention_days`: events older than this are pruned.
        public var eventRetentionDays: Double = 90
        /// `storage.backend`: `sqlite` (keeper.db and tokens.db in
        /// `storage.directory`) or `postgres` (several daemons on one database).
        public var backend: Backend = .sqlite
        public var postgres = Postgres()

        public enum Backend: String, Sendable, Equatable, CaseIterable {
            case sqlite, postgres
        }

        /// `storage.postgres.*`.
        public struct Postgres: Sendable, Equatable {
            /// `storage.postgres.url`: `postgres://USER@HOST:PORT/DATABASE`
            /// (`?host=/dir` for a Unix socket). Never a password.
            public var url: String?
            /// `storage.postgres.password_file`: a file holding the password (mode 0600).
            public var passwordFile: String?
            /// `storage.postgres.schema`: where the tables and views are.
            public var schema: String = "tokenkeeper"
            /// `storage.postgres.tls`: disable, prefer, require, verify-full or
            /// require-unverified; nil (unset): verify-full over TCP, none on
            /// a Unix socket.
            public var tls: String?
            /// `storage.postgres.tls_ca_file`: the CA for verify-full (else the system's).
            public var tlsCAFile: String?
            /// `storage.postgres.heartbeat_seconds`: how often a node says it is live;
            /// silent for three of these, it is taken for dead.
            public var heartbeatSeconds: Double = 2
            /// `storage.postgres.takeover_seconds`: how long after a seller's
            /// deadline the next node refreshes it if its first node has not.
            public var takeoverSeconds: Double = 5
            /// `storage.postgres.max_connections`: the pool's size per process.
            public var maxConnections: Int = 8
            /// `storage.postgres.statement_timeout_seconds`: a statement not
            /// answered by then (PostgreSQL down, unreachable) counts as a
            /// store failure: calls are held back until it works again.
            public var statementTimeoutSeconds: Double = 10
        }
    }

    public struct Refresh: Sendable, Equatable {
        /// `refresh.remaining_fraction`: refresh when this much of the access
        /// token's lifetime is left.
        public var remainingFraction: Double = 0.2
        /// `refresh.jitter_fraction`: spread refreshes by up to this much of the lifetime.
        public var jitterFraction: Double = 0.05
        /// `refresh.final_refresh_margin_seconds`: the last refresh this long
        /// before the refresh token's validity ends.
        public var finalRefreshMarginSeconds: Double = 300
        /// `refresh.concurrency`: refreshes in flight at once.
        public var concurrency: Int = 4
        /// `refresh.max_calls_per_second`: gateway calls per second; 0 = no limit.
        public var maxCallsPerSecond: Double = 10
        /// `refresh.retry_initial_seconds` and `refresh.retry_max_seconds`:
        /// capped exponential backoff with full jitter after transient failures.
        public var retryInitialSeconds: Double = 5
        public var retryMaxSeconds: Double = 300
        /// `refresh.configuration_probe_seconds`: while the gateway rejects our
        /// configuration, one account is tried this often.
        public var configurationProbeSeconds: Double = 60
        /// `refresh.change_poll_seconds`: how often changes made by the CLI are picked up.
        public var changePollSeconds: Double = 2
        /// `refresh.shutdown_grace_seconds`: how long a stop waits for refreshes
        /// in flight; nil (unset) means the gateway timeout plus 10 s.
        public var shutdownGraceSeconds: Double?
        /// `refresh.min_interval_seconds`: the shortest time between two
        /// refreshes of one seller, whatever lifetime an answer states.
        public var minIntervalSeconds: Double = 60
        /// `refresh.mass_rejection.sellers`, `.fraction`, `.hold_hours`: when
        /// rejections of many sellers at once are held rather than marked.
        public var massRejectionSellers: Int = 10
        public var massRejectionFraction: Double = 0.2
        public var massRejectionHoldHours: Double = 6

        /// The grace a stop gets: as configured, else the request timeout plus 10 s.
        public func effectiveShutdownGraceSeconds(timeout: Double) -> Double {
            shutdownGraceSeconds ?? timeout + 10
        }
    }

    public struct Notify: Sendable, Equatable {
        /// `notify.command`: a program and its arguments (no shell), run once
        /// per event with the event's JSON on stdin.
        public var command: [String]?
        /// `notify.command_timeout_seconds`: a hook still running then is killed (and retried).
        public var commandTimeoutSeconds: Double = 10
        /// `notify.webhook_url`: where each event is POSTed, signed.
        public var webhookURL: String?
        /// `notify.webhook_secret_file`: the HMAC key for the signature (or
        /// systemd credential `webhook_secret`).
        public var webhookSecretFile: String?
        /// `notify.webhook_timeout_seconds`: one POST, connect included.
        public var webhookTimeoutSeconds: Double = 10
        /// `notify.retry_hours`: a delivery that keeps failing is retried,
        /// with exponential backoff, for this long after its event.
        public var retryHours: Double = 24
        /// `notify.retry_initial_seconds`, `notify.retry_max_seconds`: the
        /// backoff between delivery attempts (doubling, with jitter).
        public var retryInitialSeconds: Double = 10
        public var retryMaxSeconds: Double = 900
        /// `notify.reauth_warning_days`: `reauth_due` is raised when a
        /// refresh token ends within this many days.
        public var reauthWarningDays: Double = 7
        /// `notify.reauth_check_seconds`: how often the warning window is checked.
        public var reauthCheckSeconds: Double = 60

        /// The warning window as a duration.
        public var reauthWarning: Duration { .milliseconds(Int64(reauthWarningDays * 86_400_000)) }
    }

    public struct Callback: Sendable, Equatable {
        /// `callback.listen`: `HOST:PORT` of the re-authorization callback
        /// listener (serves the path of `app.redirect_uri`); off when unset.
        public var listen: String?
        /// `callback.state_ttl_hours`: how long a signed authorization URL works.
        public var stateTTLHours: Double = 72
    }

    public struct Metrics: Sendable, Equatable {
        /// `metrics.listen`: `HOST:PORT` for `/metrics`, `/healthz`, `/readyz`; off when unset.
        public var listen: String?
    }

    /// `proxy.*`: the signing proxy for readers' business calls (docs/PROXY.md).
    public struct Proxy: Sendable, Equatable {
        /// `proxy.listen`: a loopback `HOST:PORT`, or `unix:/path` for a Unix
        /// socket; off when unset.
        public var listen: String?
        /// `proxy.socket_mode` and `proxy.socket_group`: the Unix socket's
        /// mode (octal) and group, so that only readers in the group connect.
        public var socketMode: UInt16 = 0o660
        public var socketGroup: String?
        /// `proxy.timeout_seconds`: one forwarded call, connect included.
        public var timeoutSeconds: Double = 30
        /// `proxy.refresh_share`: the share of each app's call rate proxied
        /// calls leave to refreshes (and the callback) however busy they are.
        public var refreshShare: Double = 0.2
        /// `proxy.app_daily_calls` (every app) or `proxy.app_daily_calls.<app>`:
        /// proxied calls an app may make per marketplace day; nil: no count.
        public var appDailyCalls: Double?
        public var appDailyCallsByApp: [AppName: Double] = [:]
        /// `proxy.max_request_bytes`: the largest request (file uploads included).
        public var maxRequestBytes: Int = 16 << 20
        /// `proxy.max_concurrent_calls`: calls read and answered at once; more
        /// are refused at once (503), before their body is read.
        public var maxConcurrentCalls: Int = 64
        /// `proxy.clients.<name>`, by name.
        public var clients: [ProxyClient] = []

        /// The daily cap of `app`'s proxied calls, if any.
        public func dailyCalls(for app: AppName) -> Double? {
            appDailyCallsByApp[app] ?? appDailyCalls
        }
    }

    /// `proxy.clients.<name>`: one reader of the proxy, with its own key and secret.
    public struct ProxyClient: Sendable, Equatable {
        public var name: String
        /// `proxy.clients.<name>.key`: the key the reader signs with (its SDK's app key).
        public var key: String = ""
        /// `proxy.clients.<name>.secret_file` (else the credential `proxy_<name>`).
        public var secretFile: String?
        /// `proxy.clients.<name>.apps`: the apps it may call for; nil: every app.
        public var apps: [AppName]?
        /// `proxy.clients.<name>.sellers`: the seller ids it may call for; nil: every seller.
        public var sellers: [String]?
        /// `proxy.clients.<name>.max_calls_per_second`: its own cap; nil: none but the app's.
        public var maxCallsPerSecond: Double?

        public init(name: String) {
            self.name = name
        }
    }

    public struct Log: Sendable, Equatable {
        /// `log.level`: trace, debug, info, notice, warning, error, critical.
        public var level: String = "info"
    }

    public var gateway = Gateway()
    public var app = App()
    /// The `apps:` map, by name; empty for a single-app configuration.
    public var declaredApps: [AppSettings] = []
    public var storage = Storage()
    public var refresh = Refresh()
    public var notify = Notify()
    public var callback = Callback()
    public var metrics = Metrics()
    public var proxy = Proxy()
    public var log = Log()
    /// Where the configuration was read from (nil: environment only).
    public var sourcePath: String?

    public init() {}

    /// Every app the daemon serves, by name: the `apps:` map, or the single
    /// `app:` as the one app ``AppName/default``.
    public var apps: [AppSettings] {
        guard declaredApps.isEmpty else { return declaredApps }
        var single = AppSettings(name: .default, gateway: gateway)
        single.key = app.key
        single.secretFile = app.secretFile
        single.redirectURI = app.redirectURI
        single.apiURL = app.apiURL
        single.apiURLs = app.apiURLs
        return [single]
    }

    /// True when the apps come from an `apps:` map.
    public var declaresApps: Bool { !declaredApps.isEmpty }

    /// The app named `name`, if the configuration has it.
    public func app(named name: AppName) -> AppSettings? {
        apps.first { $0.name == name }
    }

    /// The configuration key of `setting` of `app`, for messages.
    public func keyName(_ setting: String, of app: AppSettings) -> String {
        app.keyName(setting, declared: declaresApps)
    }

    /// The refresh policy these settings describe.
    public var refreshPolicy: RefreshPolicy {
        RefreshPolicy(
            remainingFraction: refresh.remainingFraction, jitterFraction: refresh.jitterFraction,
            finalRefreshMargin: .milliseconds(Int64(refresh.finalRefreshMarginSeconds * 1000)),
            retryInitial: .milliseconds(Int64(refresh.retryInitialSeconds * 1000)),
            retryMax: .milliseconds(Int64(refresh.retryMaxSeconds * 1000)),
            minimumInterval: .milliseconds(Int64(refresh.minIntervalSeconds * 1000)))
    }
}
