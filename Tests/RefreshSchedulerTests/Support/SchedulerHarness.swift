import Logging
import SchedulerTesting
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import RefreshScheduler

/// A scheduler wired to fakes, a manual clock and a manual timer, with the
/// moves a test needs: start it, let time pass, wait for conditions.
struct SchedulerHarness {
    let clock: ManualWallClock
    let timer: ManualWakeupTimer
    let store: FakeAccountStore
    /// The first app's gateway (the default app's, unless `apps` says otherwise).
    let gateway: FakeTokenGateway
    /// Each app's own gateway.
    let gateways: [AppName: FakeTokenGateway]
    let events: EventRecorder
    let logs: LogRecorder
    let scheduler: RefreshScheduler
    let configuration: RefreshSchedulerConfiguration

    static let owner = "test-daemon"

    /// - Parameter apps: The apps with a gateway, each its own fake one;
    ///   accounts of another app have none.
    init(
        concurrency: Int = 4, maxCallsPerSecond: Double? = nil, maxCallsPerSecondByApp: [AppName: Double] = [:],
        tickInterval: Duration = .seconds(5), policy: RefreshPolicy = RefreshPolicy(),
        probeInterval: Duration = .seconds(60), shutdownGracePeriod: Duration = .seconds(8),
        massRejection: MassRejectionPolicy = MassRejectionPolicy(), apps: [AppName] = [.default], seed: UInt64 = 42
    ) {
        clock = ManualWallClock()
        timer = ManualWakeupTimer()
        store = FakeAccountStore()
        var gateways: [AppName: FakeTokenGateway] = [:]
        for app in apps {
            gateways[app] = FakeTokenGateway(app: app, clock: clock) { [store] account, token in
                await store.isCurrentRefreshToken(token, of: account)
            }
        }
        self.gateways = gateways
        gateway = gateways[apps[0]]!
        events = EventRecorder(clock: clock)
        logs = LogRecorder()
        configuration = RefreshSchedulerConfiguration(
            policy: policy, concurrency: concurrency, maxCallsPerSecond: maxCallsPerSecond,
            maxCallsPerSecondByApp: maxCallsPerSecondByApp, leaseOwner: Self.owner, leaseDuration: .seconds(90),
            tickInterval: tickInterval, configurationProbeInterval: probeInterval,
            shutdownGracePeriod: shutdownGracePeriod, massRejection: massRejection)
        let events = events
        scheduler = RefreshScheduler(
            store: store, gateways: gateways.mapValues { $0 as any TokenGateway }, clock: clock,
            configuration: configuration, timer: timer, random: SeededRandom(seed: seed), logger: logs.logger(),
            onEvent: { events.record($0) })
    }

    /// The gateway of `app`.
    func gateway(_ app: AppName) -> FakeTokenGateway {
        gateways[app]!
    }

    var now: Timestamp { clock.now() }

    /// An active account whose access token (lifetime one hour) expires in
    /// `expiresIn` and whose next refresh is `due` from now; its app's
    /// gateway (if it has one) knows its refresh token, `rt-KEY-initial`.
    @discardableResult
    func addAccount(
        _ key: AccountKey, due: Duration? = .zero, expiresIn: Duration = .seconds(3600),
        lifetime: Duration = .seconds(3600), failedAttempts: Int = 0, lease: Lease? = nil
    ) async -> Account {
        let now = clock.now()
        let account = Account(
            app: key.app, sellerID: key.sellerID, refreshToken: Secret("rt-\(key)-initial"),
            accessToken: Secret("at-\(key)-initial"), expireTime: now + expiresIn,
            accessTokenLifetime: lifetime, refreshTokenValidTime: now + .seconds(30 * 86_400),
            nextRefreshAt: due.map { now + $0 }, failedAttempts: failedAttempts,
            refreshedAt: now + expiresIn - lifetime, lease: lease, updatedAt: now)
        await store.put(account)
        await gateways[key.app]?.register(key, refreshToken: account.refreshToken)
        return account
    }

    /// The moves every scheduler test makes (start, settle, let time pass).
    var driver: SchedulerDriver {
        SchedulerDriver(clock: clock, timer: timer, events: events, scheduler: scheduler)
    }

    @discardableResult
    func start() async throws -> Task<Void, any Error> {
        try await driver.start()
    }

    func settle(sourceLocation: SourceLocation = #_sourceLocation) async {
        await driver.settle(sourceLocation: sourceLocation)
    }

    func advance(by duration: Duration, sourceLocation: SourceLocation = #_sourceLocation) async {
        await driver.advance(by: duration, sourceLocation: sourceLocation)
    }

    func advance(to target: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) async {
        await driver.advance(to: target, sourceLocation: sourceLocation)
    }

    func advanceWithoutWaiting(by duration: Duration) async {
        await driver.advanceWithoutWaiting(by: duration)
    }

    func fireIfDue() async {
        await driver.fireIfDue()
    }
}
