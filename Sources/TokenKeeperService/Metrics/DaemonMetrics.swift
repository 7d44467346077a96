import Prometheus
import RefreshScheduler
import SQLiteStore
import Synchronization
import TokenKeeperCore

/// The daemon's metrics, in a swift-prometheus registry of the daemon's own
/// (not the process-wide bootstrap, so that tests may run several), every
/// family with its `# HELP` text (``help``), as Prometheus's own linter
/// (`promtool check metrics`) asks. Counters and the latency histograms move
/// as things happen; the fleet's gauges are set from figures sampled in the
/// background (``FleetSampler``), never read from the store by a scrape.
/// What concerns one app's sellers or calls carries the label `app`.
final class DaemonMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    /// The apps configured at start: their series exist from the start.
    let apps: [AppName]
    /// The per-refresh series of the apps configured at start, made once:
    /// each refresh then costs an atomic add, not a registry lookup
    /// (measured: a few per cent of the rate). An app added by a reload
    /// gets its series from the registry on first use.
    private let refreshCounters: [String: Prometheus.Counter]
    private let gatewayTimers: [String: DurationHistogram]
    /// How long after its deadline each scheduled refresh started.
    private let startDelay: DurationHistogram

    /// Every family's `# HELP` text, by name: a family not here is a
    /// programming error (``descriptor(_:)``).
    static let help: [String: String] = [
        "tokenkeeper_build_info": "The running version (always 1).",
        "tokenkeeper_refreshes_total":
            "Refreshes by app, outcome (refreshed, failed, reauth_required) and failure class.",
        "tokenkeeper_rate_limit_pauses_total": "Throttling answers (ApiCallLimit) that paused the app's calls, by app.",
        "tokenkeeper_gateway_request_duration_seconds":
            "Gateway call durations by app, API (refresh, create: the callback's code exchange) and result.",
        "tokenkeeper_refresh_start_delay_seconds": "How long after its planned time each scheduled refresh started.",
        "tokenkeeper_notification_attempts_total": "Notification delivery attempts by channel and result.",
        "tokenkeeper_accounts": "Sellers by app and status.",
        "tokenkeeper_accounts_reauth_due":
            "Active sellers whose refresh token ends within notify.reauth_warning_days.",
        "tokenkeeper_next_refresh_seconds":
            "Seconds until the earliest scheduled refresh of an active seller (negative: overdue).",
        "tokenkeeper_earliest_access_expiry_seconds":
            "Seconds until the earliest access-token expiry among active sellers (negative: one has expired).",
        "tokenkeeper_fleet_figures_age_seconds":
            "Seconds since the fleet gauges (accounts, due, next refresh, expiry, notifications) were read from the store.",
        "tokenkeeper_degraded": "1 while the reason holds refreshing back (of the app named; storage: of every app).",
        "tokenkeeper_ready": "1 once the schedule is loaded, until a stop begins.",
        "tokenkeeper_refreshes_in_flight": "Gateway refresh calls under way.",
        "tokenkeeper_notifications_pending": "Deliveries not yet made nor given up, by channel.",
        "tokenkeeper_notifications_failed": "Deliveries given up after notify.retry_hours, by channel.",
        "tokenkeeper_live_nodes": "PostgreSQL: the live nodes sharing the sellers, this one included.",
        "tokenkeeper_proxy_calls_total":
            "Calls to the signing proxy by client, app and outcome (forwarded, or why it was refused).",
        "tokenkeeper_proxy_call_duration_seconds":
            "Signing proxy calls forwarded to the gateway, by client and app: from arrival to answer.",
        "tokenkeeper_proxy_token_retries_total":
            "Proxied calls the gateway refused for the access token, retried after a refresh, by app and result.",
    ]

    static func descriptor(_ name: String) -> MetricNameDescriptor {
        guard let text = help[name] else { preconditionFailure("\(name) has no help text in DaemonMetrics.help") }
        return MetricNameDescriptor(metricName: name, unitName: "", helpText: text)
    }

    static let durationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30),
    ]

    init(apps: [AppName] = [.default]) {
        self.apps = apps
        registry.makeGauge(
            descriptor: Self.descriptor("tokenkeeper_build_info"), labels: [("version", TokenKeeperVersion.current)]
        ).set(Double(1))
        // Every series exists from the start, at zero.
        var series = [("refreshed", "none"), ("reauth_required", "account_rejected")]
        series += ["transient", "throttled", "configuration", "account_rejected"].map { ("failed", $0) }
        var refreshCounters: [String: Prometheus.Counter] = [:]
        var timers: [String: DurationHistogram] = [:]
        for app in apps {
            for (outcome, failureClass) in series {
                refreshCounters["\(app)/\(outcome)/\(failureClass)"] = registry.makeCounter(
                    descriptor: Self.descriptor("tokenkeeper_refreshes_total"),
                    labels: [("app", app.rawValue), ("outcome", outcome), ("class", failureClass)])
            }
            _ = registry.makeCounter(
                descriptor: Self.descriptor("tokenkeeper_rate_limit_pauses_total"), labels: [("app", app.rawValue)])
            for api in ["refresh", "create"] {
                for result in ["ok", "error"] {
                    timers["\(app)/\(api)/\(result)"] = Self.timer(registry, app: app, api: api, result: result)
                }
            }
        }
        self.refreshCounters = refreshCounters
        gatewayTimers = timers
        startDelay = registry.makeDurationHistogram(
            descriptor: Self.descriptor("tokenkeeper_refresh_start_delay_seconds"), buckets: Self.durationBuckets)
    }

    static func name(of failureClass: FailureClass) -> String {
        switch failureClass {
        case .accountRejected: "account_rejected"
        case .configuration: "configuration"
        case .transient: "transient"
        case .throttled: "throttled"
        }
    }

    private static func timer(_ registry: PrometheusCollectorRegistry, app: AppName, api: String, result: String)
        -> DurationHistogram
    {
        registry.makeDurationHistogram(
            descriptor: descriptor("tokenkeeper_gateway_request_duration_seconds"),
            labels: [("app", app.rawValue), ("api", api), ("result", result)], buckets: durationBuckets)
    }

    /// Counts what the scheduler reports.
    func record(_ event: SchedulerEvent) {
        switch event {
        case .refreshed(let account, _, _, _):
            refreshes(account.app, outcome: "refreshed", failureClass: "none")
        case .failed(let account, let failure, _):
            refreshes(account.app, outcome: "failed", failureClass: Self.name(of: failure.failureClass))
            if case .throttled = failure.failureClass {
                registry.makeCounter(
                    descriptor: Self.descriptor("tokenkeeper_rate_limit_pauses_total"),
                    labels: [("app", account.app.rawValue)]
                ).increment()
            }
        case .reauthRequired(let account, _, _):
            refreshes(account.app, outcome: "reauth_required", failureClass: "account_rejected")
        case .started(_, let delay):
            startDelay.record(max(delay, .zero))
        case .ready, .degraded, .recovered, .tick, .stopped, .rotationUnstored:
            break
        }
    }

    private func refreshes(_ app: AppName, outcome: String, failureClass: String) {
        if let counter = refreshCounters["\(app)/\(outcome)/\(failureClass)"] {
            counter.increment()
        } else {
            registry.makeCounter(
                descriptor: Self.descriptor("tokenkeeper_refreshes_total"),
                labels: [("app", app.rawValue), ("outcome", outcome), ("class", failureClass)]
            ).increment()
        }
    }

    /// One gateway call's duration, by app, API (`refresh`, `create`) and result.
    func gatewayCall(app: AppName, api: String, duration: Duration, succeeded: Bool) {
        let result = succeeded ? "ok" : "error"
        let timer = gatewayTimers["\(app)/\(api)/\(result)"] ?? Self.timer(registry, app: app, api: api, result: result)
        timer.record(duration)
    }

    /// One call to the signing proxy: its outcome (`forwarded` or the
    /// refusal's code) and, when forwarded, how long it took.
    func proxyCall(client: String, app: AppName?, outcome: String, duration: Duration?) {
        let app = app?.rawValue ?? ""
        registry.makeCounter(
            descriptor: Self.descriptor("tokenkeeper_proxy_calls_total"),
            labels: [("client", client), ("app", app), ("outcome", outcome)]
        ).increment()
        guard let duration else { return }
        registry.makeDurationHistogram(
            descriptor: Self.descriptor("tokenkeeper_proxy_call_duration_seconds"),
            labels: [("client", client), ("app", app)], buckets: Self.durationBuckets
        ).record(duration)
    }

    /// A proxied call retried after a refresh: `ok` when the retry was made
    /// with a new token, `unchanged` when the refresh brought none.
    func proxyTokenRetry(app: AppName, result: String) {
        registry.makeCounter(
            descriptor: Self.descriptor("tokenkeeper_proxy_token_retries_total"),
            labels: [("app", app.rawValue), ("result", result)]
        ).increment()
    }

    /// One delivery attempt on a notification channel.
    func deliveryAttempt(channel: String, succeeded: Bool) {
        registry.makeCounter(
            descriptor: Self.descriptor("tokenkeeper_notification_attempts_total"),
            labels: [("channel", channel), ("result", succeeded ? "delivered" : "failed")]
        ).increment()
    }

    /// The exposition: the fleet gauges from the last sample (absent before
    /// the first), the daemon's own from `health`.
    func render(fleet: FleetSample?, health: DaemonHealth, now: Timestamp) -> String {
        if let fleet {
            let figures = fleet.figures
            for app in Set(apps).union(fleet.byApp.keys).sorted() {
                for status in AccountStatus.allCases {
                    gauge(
                        "tokenkeeper_accounts", [("app", app.rawValue), ("status", status.rawValue)],
                        Double(fleet.byApp[app]?[status] ?? 0))
                }
            }
            gauge("tokenkeeper_accounts_reauth_due", [], Double(figures.reauthDue))
            // With nothing scheduled the figure is absent rather than a made-up number.
            if let next = figures.nextRefreshAt {
                gauge("tokenkeeper_next_refresh_seconds", [], (next - now).seconds)
            }
            if let expiry = figures.earliestAccessExpiry {
                gauge("tokenkeeper_earliest_access_expiry_seconds", [], (expiry - now).seconds)
            }
            gauge("tokenkeeper_fleet_figures_age_seconds", [], max(0, (now - fleet.at).seconds))
            for channel in health.channels {
                let counts = fleet.deliveries[channel] ?? DeliveryCounts()
                gauge("tokenkeeper_notifications_pending", [("channel", channel)], Double(counts.pending))
                gauge("tokenkeeper_notifications_failed", [("channel", channel)], Double(counts.abandoned))
            }
        }
        // Storage holds every app (app=""); the others one app each.
        gauge("tokenkeeper_degraded", [("reason", "storage"), ("app", "")], health.isDegraded("storage") ? 1 : 0)
        for reason in DaemonHealth.reasons where reason != "storage" {
            for app in apps {
                let held = health.degraded[DaemonHealth.key(reason, app: app)] != nil
                gauge("tokenkeeper_degraded", [("reason", reason), ("app", app.rawValue)], held ? 1 : 0)
            }
        }
        gauge("tokenkeeper_ready", [], health.isReady ? 1 : 0)
        gauge("tokenkeeper_refreshes_in_flight", [], Double(health.inFlight))
        return registry.emitToString()
    }

    /// PostgreSQL: the live nodes sharing the sellers, this one included.
    func recordLiveNodes(_ count: Int) {
        gauge("tokenkeeper_live_nodes", [], Double(count))
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
        registry.makeGauge(descriptor: Self.descriptor(name), labels: labels).set(value)
    }
}

/// What `/readyz` and the metrics say of the daemon itself.
struct DaemonHealth: Sendable, Equatable {
    /// The degraded reasons' names, as labels.
    static let reasons = ["configuration", "storage", "mass_rejection", "call_rate"]
    /// The schedule is loaded (READY=1 was sent) and the daemon is not stopping.
    var isReady = false
    /// ``key(of:)`` → what is wrong.
    var degraded: [String: String] = [:]
    /// The reasons in ``degraded`` that hold refreshing back (all but
    /// `call_rate`, which tells of late starts): while one holds, `/readyz` says 503.
    var holdingBack: [String: String] {
        degraded.filter { !$0.key.hasPrefix(Self.key("call_rate", app: nil)) }
    }
    var inFlight = 0
    /// The notification channels configured.
    var channels: [String] = []

    static func name(of reason: DegradedReason) -> String {
        switch reason {
        case .configuration: "configuration"
        case .storage: "storage"
        case .massRejection: "mass_rejection"
        case .callRate: "call_rate"
        }
    }

    /// What a reason is kept under while it holds: its name, and for one
    /// app's trouble the app too (`configuration/ae`), so that one app's
    /// recovery does not clear another's.
    static func key(of reason: DegradedReason) -> String {
        key(name(of: reason), app: reason.app)
    }

    static func key(_ name: String, app: AppName?) -> String {
        name + (app.map { "/\($0)" } ?? "")
    }

    /// True while the reason named `name` holds, for any app.
    func isDegraded(_ name: String) -> Bool {
        degraded.keys.contains { $0 == name || $0.hasPrefix(name + "/") }
    }
}

/// The gateway as the scheduler sees it, with each call timed for the
/// latency histogram.
struct InstrumentedGateway: TokenGateway {
    let gateway: any TokenGateway
    let metrics: DaemonMetrics
    let app: AppName

    func refresh(refreshToken: Secret) async throws(GatewayFailure) -> TokenGrant {
        try await timed("refresh") { () async throws(GatewayFailure) in
            try await gateway.refresh(refreshToken: refreshToken)
        }
    }

    func createToken(code: String) async throws(GatewayFailure) -> TokenGrant {
        try await timed("create") { () async throws(GatewayFailure) in try await gateway.createToken(code: code) }
    }

    private func timed(
        _ api: String, _ call: () async throws(GatewayFailure) -> TokenGrant
    ) async throws(GatewayFailure) -> TokenGrant {
        let start = ContinuousClock.now
        do {
            let grant = try await call()
            metrics.gatewayCall(app: app, api: api, duration: .now - start, succeeded: true)
            return grant
        } catch {
            metrics.gatewayCall(app: app, api: api, duration: .now - start, succeeded: false)
            throw error
        }
    }
}
