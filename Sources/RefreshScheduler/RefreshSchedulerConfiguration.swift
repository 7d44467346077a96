public import TokenKeeperCore

/// How the ``RefreshScheduler`` paces and protects refreshes.
public struct RefreshSchedulerConfiguration: Sendable, Equatable {
    /// When to refresh and how long to back off.
    public var policy: RefreshPolicy
    /// Refresh calls at the gateway at once (`refresh.concurrency`); at
    /// least 1. As many attempts again may hold their lease, ready to call.
    public var concurrency: Int
    /// Gateway calls started per second by each app that
    /// ``maxCallsPerSecondByApp`` does not list (`refresh.max_calls_per_second`);
    /// nil or 0 means no limit (benchmarks). Each app has its own budget at
    /// the gateway, so each is limited on its own: two apps may make twice
    /// the calls of one.
    public var maxCallsPerSecond: Double?
    /// An app's own call rate (`apps.<name>.max_calls_per_second`), where
    /// it has one; 0 means no limit for that app. See ``maxCallsPerSecond(for:)``.
    public var maxCallsPerSecondByApp: [AppName: Double]
    /// Names this process in the leases it takes; unique per process.
    public var leaseOwner: String
    /// How long a lease on an account lasts. It must outlive the gateway
    /// request timeout: a lease that ends mid-call lets a second refresher send
    /// the same refresh token. See ``leaseDuration(requestTimeout:)``.
    public var leaseDuration: Duration
    /// When another process holds an account's lease, try again this long
    /// after it expires.
    public var busyLeaseMargin: Duration
    /// How often the scheduler looks for changes made by other processes and
    /// emits ``SchedulerEvent/tick(_:)`` (the watchdog's heartbeat). Keep it
    /// at most half the systemd watchdog interval.
    public var tickInterval: Duration
    /// While the gateway rejects an app's configuration, one account of that
    /// app is tried at most this often (and one seller held by that app's
    /// mass-rejection breaker).
    public var configurationProbeInterval: Duration
    /// Backoff for failed writes to the store (a rotated pair that is not yet
    /// durable is retried from `storeRetryInitial`, doubling up to `storeRetryMax`).
    public var storeRetryInitial: Duration
    public var storeRetryMax: Duration
    /// How long a stop waits for refreshes in flight to finish and commit.
    /// Keep it above the gateway request timeout: a call that is walked away
    /// from may have rotated a token nobody will store.
    public var shutdownGracePeriod: Duration
    /// When rejections of many sellers of one app at once are held rather
    /// than marked (each app has a breaker of its own).
    public var massRejection: MassRejectionPolicy

    public init(
        policy: RefreshPolicy = RefreshPolicy(),
        concurrency: Int = 4,
        maxCallsPerSecond: Double? = 10,
        maxCallsPerSecondByApp: [AppName: Double] = [:],
        leaseOwner: String = RefreshSchedulerConfiguration.uniqueLeaseOwner(),
        leaseDuration: Duration = RefreshSchedulerConfiguration.leaseDuration(requestTimeout: .seconds(30)),
        busyLeaseMargin: Duration = .seconds(1),
        tickInterval: Duration = .seconds(2),
        configurationProbeInterval: Duration = .seconds(60),
        storeRetryInitial: Duration = .seconds(1),
        storeRetryMax: Duration = .seconds(30),
        shutdownGracePeriod: Duration = .seconds(40),
        massRejection: MassRejectionPolicy = MassRejectionPolicy()
    ) {
        self.policy = policy
        self.concurrency = max(1, concurrency)
        self.maxCallsPerSecond = maxCallsPerSecond.flatMap { $0 > 0 ? $0 : nil }
        self.maxCallsPerSecondByApp = maxCallsPerSecondByApp
        self.leaseOwner = leaseOwner
        self.leaseDuration = leaseDuration
        self.busyLeaseMargin = busyLeaseMargin
        self.tickInterval = max(tickInterval, .milliseconds(10))
        self.configurationProbeInterval = configurationProbeInterval
        self.storeRetryInitial = max(storeRetryInitial, .milliseconds(1))
        self.storeRetryMax = max(storeRetryMax, self.storeRetryInitial)
        self.shutdownGracePeriod = shutdownGracePeriod
        self.massRejection = massRejection
    }

    /// The calls per second `app` may start: its own rate where it has one,
    /// else ``maxCallsPerSecond``; nil means no limit.
    public func maxCallsPerSecond(for app: AppName) -> Double? {
        guard let rate = maxCallsPerSecondByApp[app] else { return maxCallsPerSecond }
        return rate > 0 ? rate : nil
    }

    /// A lease that outlives a request that takes the whole timeout, twice
    /// (a retry inside the client), plus room for the commit.
    public static func leaseDuration(requestTimeout: Duration) -> Duration {
        requestTimeout * 2 + .seconds(30)
    }

    /// `refresher-` and 16 random hex digits; the service passes something
    /// with the pid and host too (``uniqueLeaseOwner(role:pid:host:)``).
    public static func uniqueLeaseOwner() -> String {
        "refresher-" + randomHex()
    }

    /// `ROLE-PID@HOST/RANDOM`: unique across hosts (sharing a database),
    /// restarts (a reused pid) and processes, and readable in `list`.
    public static func uniqueLeaseOwner(role: String, pid: Int32, host: String) -> String {
        "\(role)-\(pid)@\(host)/\(randomHex())"
    }

    private static func randomHex() -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = String(generator.next() as UInt64, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
