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
    private var refusedSellers: [String: Int] = [:]
    /// Owners known to be alive: their leases are never taken over, expired or not.
    var liveOwners: Set<String> = []
    /// Every clock-step shift applied.
    private(set) var shifts: [Duration] = []

    private(set) var accounts: [String: Account] = [:]
    /// Every owner a lease was taken for, in order.
    private(set) var leaseOwners: [String] = []
    private var sequence: Int64 = 0
    private var changedAt: [String: Int64] = [:]
    /// Operations that throw, and how many more times.
    private var failures: [Operation: Int] = [:]
    private(set) var calls: [Operation: Int] = [:]
    /// Every refresh token this store ever held: the gateway asks whether the
    /// token it is sent was made durable first.
    private(set) var storedRefreshTokens: Set<String> = []
    private(set) var recordedFailures: [(sellerID: String, failedAttempts: Int, nextRefreshAt: Timestamp)] = []

    // MARK: Test knobs

    /// Adds or replaces an account as another process would (the change feed sees it).
    func put(_ account: Account) {
        accounts[account.sellerID] = account
        storedRefreshTokens.insert(account.refreshToken.exposedValue)
        touch(account.sellerID)
    }

    /// Changes an account without the change feed noticing (a feed that lags).
    func modifyQuietly(_ sellerID: String, _ change: (inout Account) -> Void) {
        guard var account = accounts[sellerID] else { return }
        change(&account)
        accounts[sellerID] = account
        storedRefreshTokens.insert(account.refreshToken.exposedValue)
    }

    /// Changes an account as another process would.
    func modify(_ sellerID: String, _ change: (inout Account) -> Void) {
        modifyQuietly(sellerID, change)
        touch(sellerID)
    }

    func delete(_ sellerID: String) {
        accounts[sellerID] = nil
        touch(sellerID)
    }

    func fail(_ operation: Operation, times: Int = Int.max) {
        failures[operation] = times
    }

    /// Refuses this seller's rotated pairs as a constraint would, `times` times.
    func refuseValues(of sellerID: String, times: Int = Int.max) {
        refusedSellers[sellerID] = times
    }

    func account(_ sellerID: String) -> Account? {
        accounts[sellerID]
    }

    func count(_ operation: Operation) -> Int {
        calls[operation, default: 0]
    }

    func isCurrentRefreshToken(_ token: Secret) -> Bool {
        accounts.values.contains { $0.refreshToken == token }
    }

    // MARK: AccountStore

    func loadSchedule() async throws -> [ScheduledAccount] {
        try check(.loadSchedule)
        // As the real store: capped by the gateway's expiry (RefreshPolicy.effectiveDeadline).
        return accounts.values.compactMap { account in
            due(of: account).map { due in
                ScheduledAccount(
                    sellerID: account.sellerID, due: min(due, RefreshPolicy.effectiveDeadline(of: account) ?? due))
            }
        }
    }

    func changes(since cursor: ChangeCursor?) async throws -> (changed: [ScheduledAccount], cursor: ChangeCursor) {
        try check(.changes)
        let current = ChangeCursor(dataVersion: 1, sequence: sequence)
        guard let cursor else { return ([], current) }
        let changed = changedAt.filter { $0.value > cursor.sequence }.keys.sorted().map { sellerID in
            ScheduledAccount(sellerID: sellerID, due: accounts[sellerID].flatMap(due(of:)))
        }
        return (changed, current)
    }

    func acquireLease(sellerID: String, owner: String, until: Timestamp, now: Timestamp) async throws -> LeaseResult {
        try check(.acquireLease)
        guard var account = accounts[sellerID] else { return .notFound }
        if let lease = account.lease, lease.owner != owner, lease.expiresAt > now || liveOwners.contains(lease.owner) {
            return .busy(lease)
        }
        account.lastAnswerLost = account.lastAnswerLost || (account.lease.map { $0.owner != owner } ?? false)
        account.lease = Lease(owner: owner, expiresAt: until)
        leaseOwners.append(owner)
        accounts[sellerID] = account
        touch(sellerID)
        return .acquired(account)
    }

    func releaseLease(sellerID: String, owner: String) async throws {
        try check(.releaseLease)
        guard var account = accounts[sellerID], account.lease?.owner == owner else { return }
        account.lease = nil
        accounts[sellerID] = account
        touch(sellerID)
    }

    func commitRotation(
        sellerID: String, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) async throws -> Bool {
        try check(.commitRotation)
        guard var account = accounts[sellerID] else { return false }
        guard account.refreshToken == sent else {
            return grant.refreshToken != nil && account.refreshToken == grant.refreshToken
        }
        if grant.refreshToken?.isEmpty == true { throw ValueRejected() }
        if let remaining = refusedSellers[sellerID], remaining > 0 {
            refusedSellers[sellerID] = remaining - 1
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
        accounts[sellerID] = account
        storedRefreshTokens.insert(account.refreshToken.exposedValue)
        touch(sellerID)
        return true
    }

    func shiftSchedules(by offset: Duration) async throws {
        try check(.shiftSchedules)
        shifts.append(offset)
        for sellerID in accounts.keys {
            accounts[sellerID]!.nextRefreshAt = accounts[sellerID]!.nextRefreshAt.map { $0 + offset }
            if let lease = accounts[sellerID]!.lease {
                accounts[sellerID]!.lease = Lease(owner: lease.owner, expiresAt: lease.expiresAt + offset)
            }
        }
    }

    func recordFailure(
        sellerID: String, owner: String, failure: GatewayFailure, failedAttempts: Int, nextRefreshAt: Timestamp,
        now: Timestamp
    ) async throws -> Bool {
        try check(.recordFailure)
        guard var account = accounts[sellerID], account.lease?.owner == owner else { return false }
        account.failedAttempts = failedAttempts
        account.lastError = "\(failure.code): \(failure.message)"
        account.lastRequestID = failure.requestID
        account.lastAnswerLost = account.lastAnswerLost || failure.answerMayBeLost
        account.nextRefreshAt = nextRefreshAt
        account.lease = nil
        account.updatedAt = now
        accounts[sellerID] = account
        recordedFailures.append((sellerID, failedAttempts, nextRefreshAt))
        touch(sellerID)
        return true
    }

    func noteRefusedPair(sellerID: String, owner: String, reason: String, until: Timestamp, now: Timestamp)
        async throws -> Bool
    {
        try check(.noteRefusedPair)
        guard var account = accounts[sellerID], let lease = account.lease, lease.owner == owner else { return false }
        account.lastError = reason
        account.lease = Lease(owner: owner, expiresAt: until)
        accounts[sellerID] = account
        return true
    }

    func markReauthRequired(
        sellerID: String, sent: Secret, reason: String, requestID: String?, now: Timestamp
    ) async throws -> Bool {
        try check(.markReauthRequired)
        guard var account = accounts[sellerID], account.refreshToken == sent else { return false }
        account.status = .reauthRequired
        account.statusReason = reason
        account.lastRequestID = requestID
        account.nextRefreshAt = nil
        account.lease = nil
        account.updatedAt = now
        accounts[sellerID] = account
        touch(sellerID)
        return true
    }

    // MARK: Internals

    private func due(of account: Account) -> Timestamp? {
        guard account.status == .active else { return nil }
        return account.nextRefreshAt ?? Timestamp(millisecondsSince1970: 0)
    }

    private func touch(_ sellerID: String) {
        sequence += 1
        changedAt[sellerID] = sequence
    }

    private func check(_ operation: Operation) throws {
        calls[operation, default: 0] += 1
        guard let remaining = failures[operation], remaining > 0 else { return }
        failures[operation] = remaining == Int.max ? remaining : remaining - 1
        throw DiskFull()
    }
}
