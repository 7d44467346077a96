import Foundation
import Logging
import RefreshScheduler
import SchedulerTesting
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The refresh scheduler over a real store of one backend, with a scripted
/// gateway, a manual clock (set to the real time, since PostgreSQL compares
/// leases with its own clock) and a manual timer: the write path's cases as
/// the daemon meets them, the same test functions on every backend.
struct SchedulerOverStore {
    let subject: StoreUnderTest
    /// The store the scheduler uses: the real one, with faults on demand.
    let store: FaultyStore
    let clock: ManualWallClock
    let gateway: FakeTokenGateway
    let events: EventRecorder
    let logs: LogRecorder
    let driver: SchedulerDriver
    let owner: String

    init(_ subject: StoreUnderTest, concurrency: Int = 4) throws {
        self.subject = subject
        let real = subject.store
        store = FaultyStore(real)
        clock = ManualWallClock(currentTime())
        gateway = FakeTokenGateway(clock: clock) { sellerID, token in
            (try? await real.account(sellerID))?.refreshToken == token
        }
        let events = EventRecorder(clock: clock)
        self.events = events
        logs = LogRecorder()
        owner = try subject.liveOwner()
        let configuration = RefreshSchedulerConfiguration(
            concurrency: concurrency, maxCallsPerSecond: nil, leaseOwner: owner, leaseDuration: .seconds(90),
            tickInterval: .seconds(5), shutdownGracePeriod: .seconds(8))
        let timer = ManualWakeupTimer()
        let scheduler = RefreshScheduler(
            store: store, gateway: gateway, clock: clock, configuration: configuration, timer: timer,
            random: SeededRandom(seed: 42), logger: logs.logger(), onEvent: { events.record($0) })
        driver = SchedulerDriver(clock: clock, timer: timer, events: events, scheduler: scheduler)
    }

    /// Opens a fresh store of `backend` (see ``Backend/open(lockWait:)``),
    /// runs `body` with a scheduler over it, and closes the store whatever
    /// happens.
    static func with(
        _ backend: Backend, lockWait: Duration? = nil, statementTimeout: Duration? = nil, concurrency: Int = 4,
        _ body: (SchedulerOverStore) async throws -> Void
    ) async throws {
        let subject = try await backend.open(lockWait: lockWait, statementTimeout: statementTimeout)
        do {
            try await body(SchedulerOverStore(subject, concurrency: concurrency))
        } catch {
            try? await subject.close()
            throw error
        }
        try await subject.close()
    }

    /// Stops a scheduler started with ``SchedulerDriver/start()`` and waits
    /// until `run()` has returned.
    func stop(_ run: Task<Void, any Error>) async throws {
        run.cancel()
        try await run.value
    }

    var scheduler: RefreshScheduler { driver.scheduler }

    /// Enrolls an active seller whose access token (of `lifetime`) expires
    /// in `expiresIn` and whose refresh is due `due` from now; the gateway
    /// knows its refresh token.
    func enroll(
        _ sellerID: String, due: Duration = .zero, expiresIn: Duration = .seconds(3600),
        lifetime: Duration = .seconds(3600)
    ) async throws {
        let now = clock.now()
        let refresh = makeToken("rt-\(sellerID)")
        let receivedAt = now + expiresIn - lifetime
        let grant = TokenGrant(
            sellerID: sellerID, profile: SellerProfile(), accessToken: makeToken("at-\(sellerID)"),
            refreshToken: refresh, accessTokenLifetime: lifetime, refreshTokenLifetime: .seconds(30 * 86_400),
            expireTime: now + expiresIn, refreshTokenValidTime: receivedAt + .seconds(30 * 86_400),
            receivedAt: receivedAt, requestID: "req-enroll-\(sellerID)")
        _ = try await subject.store.enroll(grant: grant, nextRefreshAt: now + due, now: now)
        await gateway.register(.seller(sellerID), refreshToken: refresh)
    }

    func stored(_ sellerID: String) async throws -> Account {
        try #require(try await subject.store.account(.seller(sellerID)), "\(sellerID) is not stored")
    }

    /// The pairs the scheduler handed over to be kept outside the store.
    var handedOver: [(sellerID: String, grant: TokenGrant)] {
        events.events.compactMap { event in
            if case .rotationUnstored(let account, let grant, _) = event { return (account.sellerID, grant) }
            return nil
        }
    }

    /// Lets manual time pass in steps of `step`, letting the scheduler work
    /// at each, until `condition` holds (bounded in real time: a real lock
    /// held by another process ends on the real clock).
    func advance(
        by step: Duration, until description: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () async throws -> Bool
    ) async throws {
        try await waitUntil(description, timeout: .seconds(30), sourceLocation: sourceLocation) {
            if try await condition() { return true }
            await driver.advance(by: step, sourceLocation: sourceLocation)
            return try await condition()
        }
    }
}

/// A store that passes every call to the real one beneath it, except the
/// operations a test makes fail (as a store that is briefly down does) or
/// hang (a disk that stops answering).
final class FaultyStore: AccountStore {
    enum Operation: Hashable, Sendable {
        case acquireLease, changes
    }

    /// What a store that cannot be written says: the store's fault, not an
    /// account's and not another process's lock.
    struct Down: ScopedStoreError, CustomStringConvertible {
        var scope: StoreFailureScope { .store }
        var description: String { "disk I/O error (injected)" }
    }

    private struct State {
        var failures: [Operation: Int] = [:]
        var failingSellers: [String: Int] = [:]
        var hangs: Set<Operation> = []
        var hangWaiters: [CheckedContinuation<Void, Never>] = []
        var hanging = 0
        var calls: [Operation: Int] = [:]
    }

    let real: any OperatorStore
    private let state = Mutex(State())

    init(_ real: any OperatorStore) {
        self.real = real
    }

    /// The next `times` calls of `operation` fail.
    func fail(_ operation: Operation, times: Int) {
        state.withLock { $0.failures[operation, default: 0] += times }
    }

    /// The next `times` leases of `sellerID` fail.
    func failLeases(of sellerID: String, times: Int) {
        state.withLock { $0.failingSellers[sellerID, default: 0] += times }
    }

    /// Calls of `operation` wait until ``endHang()``.
    func hang(_ operation: Operation) {
        state.withLock { _ = $0.hangs.insert(operation) }
    }

    func endHang() {
        let waiters = state.withLock { state in
            state.hangs.removeAll()
            defer { state.hangWaiters.removeAll() }
            return state.hangWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var hangingCalls: Int { state.withLock { $0.hanging } }

    func calls(_ operation: Operation) -> Int {
        state.withLock { $0.calls[operation, default: 0] }
    }

    private func enter(_ operation: Operation, sellerID: String? = nil) async throws {
        let (fails, hangs) = state.withLock { state -> (Bool, Bool) in
            state.calls[operation, default: 0] += 1
            if let sellerID, let left = state.failingSellers[sellerID], left > 0 {
                state.failingSellers[sellerID] = left - 1
                return (true, false)
            }
            if let left = state.failures[operation], left > 0 {
                state.failures[operation] = left - 1
                return (true, false)
            }
            return (false, state.hangs.contains(operation))
        }
        if fails { throw Down() }
        guard hangs else { return }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                guard state.hangs.contains(operation) else { return true }
                state.hanging += 1
                state.hangWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
        state.withLock { $0.hanging -= 1 }
    }

    func loadSchedule() async throws -> [ScheduledAccount] {
        try await real.loadSchedule()
    }

    func changes(since cursor: ChangeCursor?) async throws -> (changed: [ScheduledAccount], cursor: ChangeCursor) {
        try await enter(.changes)
        return try await real.changes(since: cursor)
    }

    func acquireLease(account: AccountKey, owner: String, until: Timestamp, now: Timestamp) async throws -> LeaseResult
    {
        try await enter(.acquireLease, sellerID: account.sellerID)
        return try await real.acquireLease(account: account, owner: owner, until: until, now: now)
    }

    func releaseLease(account: AccountKey, owner: String) async throws {
        try await real.releaseLease(account: account, owner: owner)
    }

    func commitRotation(
        account: AccountKey, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) async throws -> Bool {
        try await real.commitRotation(
            account: account, sent: sent, grant: grant, nextRefreshAt: nextRefreshAt, now: now)
    }

    func recordFailure(
        account: AccountKey, owner: String, failure: GatewayFailure, failedAttempts: Int, nextRefreshAt: Timestamp,
        now: Timestamp
    ) async throws -> Bool {
        try await real.recordFailure(
            account: account, owner: owner, failure: failure, failedAttempts: failedAttempts,
            nextRefreshAt: nextRefreshAt, now: now)
    }

    func noteRefusedPair(account: AccountKey, owner: String, reason: String, until: Timestamp, now: Timestamp)
        async throws -> Bool
    {
        try await real.noteRefusedPair(account: account, owner: owner, reason: reason, until: until, now: now)
    }

    func shiftSchedules(by offset: Duration) async throws {
        try await real.shiftSchedules(by: offset)
    }

    func markReauthRequired(account: AccountKey, sent: Secret, reason: String, requestID: String?, now: Timestamp)
        async throws -> Bool
    {
        try await real.markReauthRequired(
            account: account, sent: sent, reason: reason, requestID: requestID, now: now)
    }
}
