import CoreMetrics
import Metrics
import Prometheus
import RefreshScheduler
import SQLiteStore
import Synchronization
import TokenKeeperCore

/// The daemon's metrics, through swift-metrics with swift-prometheus as the
/// backend (a registry of the daemon's own, not the process-wide bootstrap,
/// so that tests may run several). Counters and the latency histogram move as
/// things happen; the fleet's gauges are read from keeper.db at each scrape.
final class DaemonMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// The per-refresh series, made once: each refresh then costs an atomic
    /// add, not a registry lookup (measured: a few per cent of the rate).
    private let refreshCounters: [String: CoreMetrics.Counter]
    private let rateLimitPauses: CoreMetrics.Counter
    private let gatewayTimers: [String: Metrics.Timer]
    /// How long after its deadline each scheduled refresh started.
    private let startDelay: Metrics.Timer

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30),
        ]
        self.factory = factory
        Gauge(label: "tokenkeeper_build_info", dimensions: [("version", TokenKeeperVersion.current)], factory: factory)
            .record(1)
        // Every series exists from the start, at zero.
        var series = [("refreshed", "none"), ("reauth_required", "account_rejected")]
        series += ["transient", "throttled", "configuration", "account_rejected"].map { ("failed", $0) }
        var refreshCounters: [String: CoreMetrics.Counter] = [:]
        for (outcome, failureClass) in series {
            let counter = CoreMetrics.Counter(
                label: "tokenkeeper_refreshes_total", dimensions: [("outcome", outcome), ("class", failureClass)],
                factory: factory)
            counter.increment(by: 0)
            refreshCounters[outcome + "/" + failureClass] = counter
        }
        self.refreshCounters = refreshCounters
        rateLimitPauses = CoreMetrics.Counter(label: "tokenkeeper_rate_limit_pauses_total", factory: factory)
        rateLimitPauses.increment(by: 0)
        var timers: [String: Metrics.Timer] = [:]
        for api in ["refresh", "create"] {
            for result in ["ok", "error"] {
                timers[api + "/" + result] = Metrics.Timer(
                    label: "tokenkeeper_gateway_request_duration_seconds",
                    dimensions: [("api", api), ("result", result)],
                    factory: factory)
            }
        }
        gatewayTimers = timers
        startDelay = Metrics.Timer(label: "tokenkeeper_refresh_start_delay_seconds", factory: factory)
    }

    static func name(of failureClass: FailureClass) -> String {
        switch failureClass {
        case .accountRejected: "account_rejected"
        case .configuration: "configuration"
        case .transient: "transient"
        case .throttled: "throttled"
        }
    }

    /// Counts what the scheduler reports.
    func record(_ event: SchedulerEvent) {
        switch event {
        case .refreshed:
            refreshes(outcome: "refreshed", failureClass: "none")
        case .failed(_, let failure, _):
            refreshes(outcome: "failed", failureClass: Self.name(of: failure.failureClass))
            if case .throttled = failure.failureClass {
                rateLimitPauses.increment()
            }
        case .reauthRequired:
            refreshes(outcome: "reauth_required", failureClass: "account_rejected")
        case .started(_, let delay):
            startDelay.recordNanoseconds(Self.nanoseconds(delay))
        case .ready, .degraded, .recovered, .tick, .stopped, .rotationUnstored:
            break
        }
    }

    private func refreshes(outcome: String, failureClass: String) {
        refreshCounters[outcome + "/" + failureClass]?.increment()
    }

    /// One gateway call's duration, by API (`refresh`, `create`) and result.
    func gatewayCall(api: String, duration: Duration, succeeded: Bool) {
        gatewayTimers[api + "/" + (succeeded ? "ok" : "error")]?.recordNanoseconds(Self.nanoseconds(duration))
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds &* 1_000_000_000 &+ duration.components.attoseconds / 1_000_000_000
    }

    /// One delivery attempt on a notification channel.
    func deliveryAttempt(channel: String, succeeded: Bool) {
        Counter(
            label: "tokenkeeper_notification_attempts_total",
            dimensions: [("channel", channel), ("result", succeeded ? "delivered" : "failed")], factory: factory
        ).increment()
    }

    /// The exposition: fleet gauges set from `figures` first.
    func render(figures: FleetFigures, deliveries: [String: DeliveryCounts], health: DaemonHealth, now: Timestamp)
        -> String
    {
        for status in AccountStatus.allCases {
            gauge("tokenkeeper_accounts", [("status", status.rawValue)], Double(figures.byStatus[status] ?? 0))
        }
        gauge("tokenkeeper_accounts_reauth_due", [], Double(figures.reauthDue))
        // With nothing scheduled the figure is absent rather than a made-up number.
        if let next = figures.nextRefreshAt {
            gauge("tokenkeeper_next_refresh_seconds", [], (next - now).seconds)
        }
        if let expiry = figures.earliestAccessExpiry {
            gauge("tokenkeeper_earliest_access_expiry_seconds", [], (expiry - now).seconds)
        }
        for reason in DaemonHealth.reasons {
            gauge("tokenkeeper_degraded", [("reason", reason)], health.degraded[reason] == nil ? 0 : 1)
        }
        gauge("tokenkeeper_ready", [], health.isReady ? 1 : 0)
        gauge("tokenkeeper_refreshes_in_flight", [], Double(health.inFlight))
        for channel in health.channels {
            let counts = deliveries[channel] ?? DeliveryCounts()
            gauge("tokenkeeper_notifications_pending", [("channel", channel)], Double(counts.pending))
            gauge("tokenkeeper_notifications_failed", [("channel", channel)], Double(counts.abandoned))
        }
        return registry.emitToString()
    }

    /// PostgreSQL: the live nodes sharing the sellers, this one included.
    func recordLiveNodes(_ count: Int) {
        gauge("tokenkeeper_live_nodes", [], Double(count))
    }

    private func gauge(_ name: String, _ dimensions: [(String, String)], _ value: Double) {
        Gauge(label: name, dimensions: dimensions, factory: factory).record(value)
    }
}

/// What `/readyz` and the metrics say of the daemon itself.
struct DaemonHealth: Sendable, Equatable {
    /// The degraded reasons' names, as labels.
    static let reasons = ["configuration", "storage", "mass_rejection"]
    /// The schedule is loaded (READY=1 was sent) and the daemon is not stopping.
    var isReady = false
    /// Reason name → what is wrong.
    var degraded: [String: String] = [:]
    var inFlight = 0
    /// The notification channels configured.
    var channels: [String] = []

    static func name(of reason: DegradedReason) -> String {
        switch reason {
        case .configuration: "configuration"
        case .storage: "storage"
        case .massRejection: "mass_rejection"
        }
    }
}

/// The gateway as the scheduler sees it, with each call timed for the
/// latency histogram.
struct InstrumentedGateway: TokenGateway {
    let gateway: any TokenGateway
    let metrics: DaemonMetrics

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
            metrics.gatewayCall(api: api, duration: .now - start, succeeded: true)
            return grant
        } catch {
            metrics.gatewayCall(api: api, duration: .now - start, succeeded: false)
            throw error
        }
    }
}
