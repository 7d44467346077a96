import TokenKeeperCore

/// An in-memory ``AccountStore`` with the semantics the scheduler relies on
/// (leases, compare-and-set on the refresh token, a change feed), plus knobs
/// for failures and for playing "another process".
actor FakeAccountStore: AccountStore {
    struct DiskFull: Error, CustomStringConvertible {
        var description: String { "disk I/O error (SQLITE_FULL)" }
    }

    /// What SQLite's `CHECK (refresh_token <> '')` says: this account's values
    /// cannot be stored; other accounts' can.
    struct ValueRejected: ScopedStoreError, CustomStringConvertible {
        var scope: StoreFailureScope { .account }
        var description: String { "CHECK constraint failed: refresh_token <> ''" }
    }

    enum Operation: Hashable, Sendable {
        case loadSchedule, changes, acquireLease, releaseLease, commitRotation, recordFailure, markReauthRequired,
            shiftSchedules, noteRefusedPair
    }

    /// Sellers whose rotated pairs the store refuses for their own values, and how many more times.
    private var refusedSellers: [AccountKey: Int] = [:]
    /// Owners known to be alive: their leases are never taken over, expired or not.
    var liveOwners: Set<String> = []
    /// Every clock-step shift applied.
    private(set) var shifts: [Duration] = []

    private(set) var accounts: [AccountKey: Account] = [:]
    /// Every owner a lease was taken for, in order.
    private(set) var leaseOwners: [String] = []
    private var sequence: Int64 = 0
    private var changedAt: [AccountKey: Int64] = [:]
    /// Operations that throw, and how many more times.
    private var failures: [Operation: Int] = [:]
    private(set) var calls: [Operation: Int] = [:]
    /// Every refresh token this store ever held: the gateway asks whether the
    /// token it is sent was made durable first.
    private(set) var storedRefreshTokens: Set<String> = []
    private(set) var recordedFailures: [(account: AccountKey, failedAttempts: Int, nextRefreshAt: Timestamp)] = []

    // MARK: Test knobs

    /// Adds or replaces an account as another process would (the change feed sees it).
    func put(_ account: Account) {
        accounts[account.key] = account
        storedRefreshTokens.insert(account.refreshToken.exposedValue)
        touch(account.key)
    }

    /// Changes an account without the change feed noticing (a feed that lags).
    func modifyQuietly(_ key: AccountKey, _ change: (inout Account) -> Void) {
        guard var account = accounts[key] else { return }
        change(&account)
        accounts[key] = account
        storedRefreshTokens.insert(account.refreshToken.exposedValue)
    }

    /// Changes an account as another process would.
    func modify(_ key: AccountKey, _ change: (inout Account) -> Void) {
        modifyQuietly(key, change)
        touch(key)
    }

    func delete(_ key: AccountKey) {
        accounts[key] = nil
        touch(key)
    }

    func fail(_ operation: Operation, times: Int = Int.max) {
        failures[operation] = times
    }

    /// Refuses this seller's rotated pairs as a constraint would, `times` times.
    func refuseValues(of key: AccountKey, times: Int = Int.max) {
        refusedSellers[key] = times
    }

    func account(_ key: AccountKey) -> Account? {
        accounts[key]
    }

    func count(_ operation: Operation) -> Int {
        calls[operation, default: 0]
    }

    func isCurrentRefreshToken(_ token: Secret) -> Bool {
        accounts.values.contains { $0.refreshToken == token }
    }

    /// Whether `token` is the refresh token stored for `key` (not merely for some account).
    func isCurrentRefreshToken(_ token: Secret, of key: AccountKey) -> Bool {
        accounts[key]?.refreshToken == token
    }

    // MARK: AccountStore

    func loadSchedule() async throws -> [ScheduledAccount] {
        try check(.loadSchedule)
        // As the real store: capped by the gateway's expiry (RefreshPolicy.effectiveDeadline).
        return accounts.values.compactMap { account in
            due(of: account).map { due in
                let capped = min(due, RefreshPolicy.effectiveDeadline(of: account) ?? due)
                // As the real store: the expiry of a token due within the hour before it.
                let expiry = account.expireTime.flatMap { $0 < capped + .seconds(3600) ? $0 : nil }
                return ScheduledAccount(account.key, due: capped, expireTime: expiry)
            }
        }
    }

    func changes(since cursor: ChangeCursor?) async throws -> (changed: [ScheduledAccount], cursor: ChangeCursor) {
        try check(.changes)
        let current = ChangeCursor(dataVersion: 1, sequence: sequence)
        guard let cursor else { return ([], current) }
        let changed = changedAt.filter { $0.value > cursor.sequence }.keys.sorted().map { key in
            ScheduledAccount(key, due: accounts[key].flatMap(due(of:)))
        }
        return (changed, current)
    }

    func acquireLease(account key: AccountKey, owner: String, until: Timestamp, now: Timestamp) async throws
        -> LeaseResult
    {
        try check(.acquireLease)
        guard var account = accounts[key] else { return .notFound }
        if let lease = account.lease, lease.owner != owner, lease.expiresAt > now || liveOwners.contains(lease.owner) {
            return .busy(lease)
        }
        account.lastAnswerLost = account.lastAnswerLost || (account.lease.map { $0.owner != owner } ?? false)
        account.lease = Lease(owner: owner, expiresAt: until)
        leaseOwners.append(owner)
        accounts[key] = account
        touch(key)
        return .acquired(account)
    }

    func releaseLease(account key: AccountKey, owner: String) async throws {
        try check(.releaseLease)
        guard var account = accounts[key], account.lease?.owner == owner else { return }
        account.lease = nil
        accounts[key] = account
        touch(key)
    }

    func commitRotation(
        account key: AccountKey, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) async throws -> Bool {
        try check(.commitRotation)
        guard var account = accounts[key] else { return false }
        guard account.refreshToken == sent else {
            return grant.refreshToken != nil && account.refreshToken == grant.refreshToken
        }
        if grant.refreshToken?.isEmpty == true { throw ValueRejected() }
        if let remaining = refusedSellers[key], remaining > 0 {
            refusedSellers[key] = remaining - 1
            throw ValueRejected()
        }
        // What the answer left out is kept, as keeper.db does.
        account.refreshToken = grant.refreshToken ?? account.refreshToken
        if let accessToken = grant.accessToken {
            account.accessToken = accessToken
            account.expireTime = grant.expireTime
            account.accessTokenLifetime = grant.accessTokenLifetime
        }
        account.refreshTokenValidTime = grant.refreshTokenValidTime ?? account.refreshTokenValidTime
        account.isRefreshable = !grant.isFinalGrant
        if account.status == .reauthRequired { account.status = .active }
        if account.status != .disabled { account.statusReason = nil }
        account.refreshedAt = grant.receivedAt
        account.nextRefreshAt = nextRefreshAt
        account.failedAttempts = 0
        account.lastError = nil
        account.lastAnswerLost = false
        account.lastRequestID = grant.requestID
        account.lease = nil
        account.updatedAt = now
        accounts[key] = account
        storedRefreshTokens.insert(account.refreshToken.exposedValue)
        touch(key)
        return true
    }

    func shiftSchedules(by offset: Duration) async throws {
        try check(.shiftSchedules)
        shifts.append(offset)
        for key in accounts.keys {
            accounts[key]!.nextRefreshAt = accounts[key]!.nextRefreshAt.map { $0 + offset }
            if let lease = accounts[key]!.lease {
                accounts[key]!.lease = Lease(owner: lease.owner, expiresAt: lease.expiresAt + offset)
            }
        }
    }

    func recordFailure(
        account key: AccountKey, owner: String, failure: GatewayFailure, failedAttempts: Int,
        nextRefreshAt: Timestamp, now: Timestamp
    ) async throws -> Bool {
        try check(.recordFailure)
        guard var account = accounts[key], account.lease?.owner == owner else { return false }
        account.failedAttempts = failedAttempts
        account.lastError = "\(failure.code): \(failure.message)"
        account.lastRequestID = failure.requestID
        account.lastAnswerLost = account.lastAnswerLost || failure.answerMayBeLost
        account.nextRefreshAt = nextRefreshAt
        account.lease = nil
        account.updatedAt = now
        accounts[key] = account
        recordedFailures.append((key, failedAttempts, nextRefreshAt))
        touch(key)
        return true
    }

    func noteRefusedPair(account key: AccountKey, owner: String, reason: String, until: Timestamp, now: Timestamp)
        async throws -> Bool
    {
        try check(.noteRefusedPair)
        guard var account = accounts[key], let lease = account.lease, lease.owner == owner else { return false }
        account.lastError = reason
        account.lease = Lease(owner: owner, expiresAt: until)
        accounts[key] = account
        return true
    }

    func markReauthRequired(
        account key: AccountKey, sent: Secret, reason: String, requestID: String?, now: Timestamp
    ) async throws -> Bool {
        try check(.markReauthRequired)
        guard var account = accounts[key], account.refreshToken == sent else { return false }
        account.status = .reauthRequired
        account.statusReason = reason
        account.lastRequestID = requestID
        account.nextRefreshAt = nil
        account.lease = nil
        account.updatedAt = now
        accounts[key] = account
        touch(key)
        return true
    }

    // MARK: Internals

    private func due(of account: Account) -> Timestamp? {
        guard account.status == .active else { return nil }
        return account.nextRefreshAt ?? Timestamp(millisecondsSince1970: 0)
    }

    private func touch(_ key: AccountKey) {
        sequence += 1
        changedAt[key] = sequence
    }

    private func check(_ operation: Operation) throws {
        calls[operation, default: 0] += 1
        guard let remaining = failures[operation], remaining > 0 else { return }
        failures[operation] = remaining == Int.max ? remaining : remaining - 1
        throw DiskFull()
    }
}
