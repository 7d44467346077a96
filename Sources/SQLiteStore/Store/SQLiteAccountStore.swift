public import Logging
public import TokenKeeperCore

/// The account store over two SQLite files in one storage directory:
/// `keeper.db` (mode 0600, the truth: refresh tokens, schedule, leases,
/// events) and `tokens.db` (mode 0640, the readers' contract in
/// docs/DATABASE.md: access tokens only).
///
/// An actor on its own dispatch queue: SQLite blocks (fsync with
/// `synchronous=FULL`, waits for another process's lock up to the busy
/// timeout), and blocking belongs off Swift's cooperative thread pool.
///
/// Every write commits keeper.db first, then updates tokens.db. A tokens.db
/// failure after the keeper.db commit is not thrown (keeper.db is the truth
/// and did commit): it is logged as critical and tokens.db is repaired from
/// keeper.db on later writes and at the next open.
///
/// Several processes may open the same directory at once (the daemon and CLI
/// commands): writes take SQLite's write lock with `BEGIN IMMEDIATE`, leases
/// keep refreshes of one seller apart, and ``changes(since:)`` reports what
/// the others wrote.
public actor SQLiteAccountStore: AccountStore {
    /// Options for ``open(directory:options:clock:logger:)``.
    public struct Options: Sendable {
        /// How long a write waits for another process's write lock.
        public var busyTimeout: Duration
        /// Accounts per transaction in ``importAccounts(_:batchSize:now:)`` when not given.
        public var importBatchSize: Int

        /// Compare tokens.db with keeper.db while opening (and repair it).
        /// False leaves it to ``SQLiteAccountStore/checkReaders(stretch:)``,
        /// which a daemon runs after start: at a million sellers the
        /// comparison takes seconds, which would delay `READY`; a command
        /// that only reads keeper.db needs neither.
        public var checkReadersAtOpen: Bool

        public init(busyTimeout: Duration = .seconds(5), importBatchSize: Int = 2000, checkReadersAtOpen: Bool = true) {
            self.busyTimeout = busyTimeout
            self.importBatchSize = importBatchSize
            self.checkReadersAtOpen = checkReadersAtOpen
        }
    }

    private let executor: DispatchQueueExecutor
    let vault: AccountVault
    private let options: Options

    /// How the refresher's writes were grouped.
    public struct GroupCommitCounts: Sendable, Equatable {
        /// keeper.db transactions that committed refresher writes.
        public var commits = 0
        /// Writes in them.
        public var writes = 0
        /// The most writes in one.
        public var largest = 0

        mutating func record(_ size: Int) {
            commits += 1
            writes += size
            largest = max(largest, size)
        }
    }

    /// A refresher's write waiting for the next group commit.
    private struct QueuedWrite {
        var run: () throws -> Void
        var finish: ((any Error)?) -> Void
    }

    /// What a queued write produced, read when its batch has committed.
    private final class Produced<Value> {
        var value: Value?
    }

    private var queuedWrites: [QueuedWrite] = []
    private var groupCommitScheduled = false
    /// Group commits so far: how many, how many writes, the largest.
    public private(set) var groupCommits = GroupCommitCounts()
    // For tests: queued writes wait while held.
    private var groupCommitsHeld = false
    private var queueWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    /// `keeper.db`'s path.
    public nonisolated let keeperPath: String
    /// `tokens.db`'s path.
    public nonisolated let tokensPath: String

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    private init(executor: DispatchQueueExecutor, vault: AccountVault, options: Options) {
        self.executor = executor
        self.vault = vault
        self.options = options
        self.keeperPath = vault.keeperPath
        self.tokensPath = vault.tokensPath
    }

    /// Opens the store in `directory`, creating the directory (mode 0750) and
    /// both files if needed, applying schema migrations, and rebuilding
    /// tokens.db rows that disagree with keeper.db.
    ///
    /// - Parameters:
    ///   - directory: The storage directory; its group is the readers' group,
    ///     given to tokens.db and its `-wal`/`-shm` files.
    ///   - clock: Dates the events the store records on its own.
    ///   - logger: Receives warnings (modes narrowed, rows repaired) and
    ///     critical errors (tokens.db writes that failed); never a token.
    /// - Throws: ``SQLiteStoreError`` for a file that is not a database, not
    ///   ours, or newer than this binary (each left untouched), or a file
    ///   problem; ``SQLiteError`` for a database error.
    public static func open(
        directory: String, options: Options = Options(), clock: any WallClock = SystemWallClock(),
        logger: Logger = Logger(label: "tokenkeeper.store")
    ) async throws -> SQLiteAccountStore {
        let executor = DispatchQueueExecutor(label: "tokenkeeper.store")
        let vault = try await executor.run {
            try AccountVault(
                directory: directory, busyTimeout: options.busyTimeout, checkReaders: options.checkReadersAtOpen,
                clock: clock, logger: logger)
        }
        return SQLiteAccountStore(executor: executor, vault: vault, options: options)
    }

    /// Closes both files; later calls throw ``SQLiteStoreError/closed``.
    public func close() throws {
        try vault.close()
    }

    // MARK: - AccountStore

    public func loadSchedule() throws -> [ScheduledAccount] {
        try vault.loadSchedule()
    }

    /// Cheap when nothing changed: one `PRAGMA data_version`. Otherwise one
    /// indexed query for the accounts (and tombstones) whose change sequence
    /// is past the cursor's.
    public func changes(since cursor: ChangeCursor?) throws -> (changed: [ScheduledAccount], cursor: ChangeCursor) {
        try vault.changes(since: cursor)
    }

    // The refresher's writes are group-committed: those that arrive while a
    // commit is under way (an fsync with synchronous=FULL) are committed
    // together in the next one. Each caller resumes only once its own write
    // is durable, so a rotated pair is stored before its seller can be
    // refreshed again or its access token is published.

    public func acquireLease(account: AccountKey, owner: String, until: Timestamp, now: Timestamp) async throws
        -> LeaseResult
    {
        try await groupCommitted { [vault] in
            try vault.acquireLease(account: account, owner: owner, until: until, now: now)
        }
    }

    public func releaseLease(account: AccountKey, owner: String) async throws {
        try await groupCommitted { [vault] in try vault.releaseLease(account: account, owner: owner) }
    }

    public func commitRotation(
        account: AccountKey, sent: Secret, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp
    ) async throws -> Bool {
        try await groupCommitted { [vault] in
            try vault.commitRotation(
                account: account, sent: sent, grant: grant, nextRefreshAt: nextRefreshAt, now: now)
        }
    }

    @discardableResult
    public func recordFailure(
        account: AccountKey, owner: String, failure: GatewayFailure, failedAttempts: Int, nextRefreshAt: Timestamp,
        now: Timestamp
    ) async throws -> Bool {
        try await groupCommitted { [vault] in
            try vault.recordFailure(
                account: account, owner: owner, failure: failure, failedAttempts: failedAttempts,
                nextRefreshAt: nextRefreshAt, now: now)
        }
    }

    @discardableResult
    public func noteRefusedPair(
        account: AccountKey, owner: String, reason: String, until: Timestamp, now: Timestamp
    ) async throws -> Bool {
        try await groupCommitted { [vault] in
            try vault.noteRefusedPair(account: account, owner: owner, reason: reason, until: until, now: now)
        }
    }

    public func markReauthRequired(
        account: AccountKey, sent: Secret, reason: String, requestID: String?, now: Timestamp
    ) async throws -> Bool {
        try await groupCommitted { [vault] in
            try vault.markReauthRequired(
                account: account, sent: sent, reason: reason, requestID: requestID, now: now)
        }
    }

    /// Queues `body` for the next group commit and returns what it produced
    /// once that commit is durable (or throws its error).
    private func groupCommitted<Value: Sendable>(_ body: @escaping () throws -> Value) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let produced = Produced<Value>()
            queuedWrites.append(
                QueuedWrite(
                    run: { produced.value = try body() },
                    finish: { error in
                        if let error {
                            continuation.resume(throwing: error)
                        } else if let value = produced.value {
                            continuation.resume(returning: value)
                        } else {
                            continuation.resume(throwing: SQLiteStoreError.closed)
                        }
                    }))
            resumeQueueWaiters()
            guard !groupCommitScheduled, !groupCommitsHeld else { return }
            groupCommitScheduled = true
            // Behind the calls already queued on this actor: they join it.
            Task { self.commitQueuedWrites() }
        }
    }

    private func commitQueuedWrites() {
        groupCommitScheduled = false
        let batch = queuedWrites
        queuedWrites.removeAll(keepingCapacity: true)
        guard !batch.isEmpty else { return }
        groupCommits.record(batch.count)
        let errors = vault.writeBatch(batch.map(\.run))
        for (write, error) in zip(batch, errors) {
            write.finish(error)
        }
    }

    /// For tests: queued writes wait until ``releaseGroupCommits()``.
    func holdGroupCommits() {
        groupCommitsHeld = true
    }

    /// For tests: commits what was queued while held, as one group.
    func releaseGroupCommits() {
        groupCommitsHeld = false
        commitQueuedWrites()
    }

    /// For tests: returns once `count` writes are queued.
    func waitForQueuedWrites(_ count: Int) async {
        guard queuedWrites.count < count else { return }
        await withCheckedContinuation { queueWaiters.append((count, $0)) }
    }

    private func resumeQueueWaiters() {
        let ready = queueWaiters.filter { $0.count <= queuedWrites.count }
        queueWaiters.removeAll { $0.count <= queuedWrites.count }
        for waiter in ready { waiter.continuation.resume() }
    }

    // MARK: - Commands

    /// Stores the seller of an authorization-code grant (`add --code`): a new
    /// account, or new tokens for an existing one, which becomes active with
    /// its failures and status reason cleared.
    ///
    /// - Parameters:
    ///   - app: The app whose authorization code it was.
    ///   - grant: The answer of `/auth/token/create`; `grant.sellerID` is the key within the app.
    ///   - nextRefreshAt: When the scheduler should refresh it first.
    ///   - now: Dates the change.
    /// - Returns: The account as stored.
    public func enroll(app: AppName = .default, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) throws
        -> Account
    {
        try vault.enroll(app: app, grant: grant, nextRefreshAt: nextRefreshAt, now: now)
    }

    /// Stores a new seller, or new tokens for one that needs re-authorization;
    /// leaves an account tokenkeeper manages (active or disabled) untouched
    /// and returns nil for it.
    public func enrollUnlessManaged(app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp)
        throws -> Account?
    {
        try vault.enroll(app: app, grant: grant, nextRefreshAt: nextRefreshAt, now: now, replacingManaged: false)
    }

    /// Imports sellers from another tool, in transactions of at most
    /// `batchSize` records and about 100 ms each (so that another process's
    /// write, the daemon's, waits about that long). A seller tokenkeeper already manages (active or disabled) is
    /// skipped and listed in ``ImportSummary/alreadyManaged`` unless
    /// `replace`; then, like a seller that is `reauth_required`, it gets the
    /// new tokens and becomes active. Invalid records (empty seller id or
    /// refresh token, an access token without expiry) are refused by index and
    /// the rest stored.
    ///
    /// - Throws: ``SQLiteStoreError/importInterrupted(imported:error:)`` when a
    ///   batch fails: the batches before it stay stored.
    public func importAccounts(
        _ records: [ImportRecord], replace: Bool = false, batchSize: Int? = nil, now: Timestamp
    ) throws -> ImportSummary {
        try vault.importAccounts(records, replace: replace, batchSize: batchSize ?? options.importBatchSize, now: now)
    }

    /// Takes the write lock and writes (nothing that changes an account), so
    /// that a command about to spend something single-use (an authorization
    /// code) knows first that the store can be written: not read-only, not
    /// locked for good, not on a full disk where that shows at once.
    public func checkWritable() throws {
        try vault.write { _ in
            try vault.keeper.execute("UPDATE change_counter SET seq = seq WHERE id = 1", [])
        }
    }

    /// Moves every stored deadline and lease by `offset` (the wall clock was stepped).
    public func shiftSchedules(by offset: Duration) throws {
        try vault.shiftSchedules(by: offset)
    }

    /// Deletes events older than `cutoff` in batches of `batchSize`, yielding
    /// the store between batches so refreshes are never held back for long.
    /// Returns how many were deleted.
    @discardableResult
    public func pruneEvents(before cutoff: Timestamp, batchSize: Int = 5000) async throws -> Int {
        var total = 0
        while true {
            let deleted = try vault.pruneEvents(before: cutoff, limit: batchSize)
            total += deleted
            if deleted < batchSize { return total }
            await Task.yield()
        }
    }

    /// Disables (`.disabled`) or enables (`.active`) an account.
    ///
    /// - Parameters:
    ///   - nextRefreshAt: For `.active`: the first refresh (nil: at once).
    /// - Returns: The account as stored (unchanged if it already had `status`).
    /// - Throws: ``SQLiteStoreError/unknownSeller(_:)``;
    ///   ``SQLiteStoreError/needsReauthorization(sellerID:)`` for an account
    ///   that is `reauth_required`, or when asked to set that status (only
    ///   ``markReauthRequired(account:sent:reason:requestID:now:)`` does).
    public func setStatus(
        account: AccountKey, to status: AccountStatus, nextRefreshAt: Timestamp? = nil, now: Timestamp
    ) throws -> Account {
        try vault.setStatus(account: account, to: status, nextRefreshAt: nextRefreshAt, now: now)
    }

    /// Removes an account and its readers' rows; the change feed reports it
    /// with no deadline. Its events stay.
    ///
    /// - Throws: ``SQLiteStoreError/unknownSeller(_:)``.
    public func remove(account: AccountKey, now: Timestamp) throws {
        try vault.remove(account: account, now: now)
    }

    /// One account as stored, or nil.
    public func account(_ key: AccountKey) throws -> Account? {
        try vault.account(key)
    }

    public func accountKeys(sellerID: String) throws -> [AccountKey] {
        try vault.accountKeys(sellerID: sellerID)
    }

    public func accountKey(app: AppName, servingSeller sellerID: String) throws -> AccountKey? {
        try vault.accountKey(app: app, servingSeller: sellerID)
    }

    /// At most `limit` accounts (of `app`, or of all) after `key` (from the
    /// first when nil), by app and seller id: a page, so that a million
    /// accounts are read with bounded memory (`list`).
    public func accounts(app: AppName?, after key: AccountKey?, limit: Int) throws -> [Account] {
        try vault.accounts(app: app, after: key, limit: limit)
    }

    /// Every account, by app and seller id.
    public func allAccounts() throws -> [Account] {
        try vault.allAccounts()
    }

    /// How many accounts must authorize again (the daemon's status line).
    public func countReauthRequired() throws -> Int {
        try vault.countReauthRequired()
    }

    /// How many accounts of each app have each status.
    public func statusCounts() throws -> [AppName: [AccountStatus: Int]] {
        try vault.statusCounts()
    }

    /// The latest events, newest first, of one seller (of any app) or of all.
    public func recentEvents(limit: Int, sellerID: String? = nil) throws -> [StoredEvent] {
        try vault.events(EventQuery(sellerID: sellerID, limit: limit))
    }

    /// Appends an event. `detail` must not contain a token (a ``Secret``
    /// interpolates as its fingerprint, which is fine). An event naming a
    /// seller and no app is the default app's.
    public func appendEvent(
        _ kind: EventKind, app: AppName? = nil, sellerID: String? = nil, detail: String? = nil,
        requestID: String? = nil, at: Timestamp
    ) throws {
        try vault.appendEvent(
            kind: kind, app: app ?? (sellerID == nil ? nil : .default), sellerID: sellerID, detail: detail,
            requestID: requestID, at: at)
    }

    /// True when called on the store's own dispatch queue, where every
    /// isolated method runs (for tests).
    func isRunningOnOwnQueue() -> Bool {
        executor.isCurrent
    }

    /// Compares tokens.db with keeper.db a stretch of `stretch` sellers at a
    /// time, rewriting the rows that differ, and lets other calls (the
    /// refresher's) run between stretches. Returns how many rows were
    /// rewritten; logs a warning when any were.
    @discardableResult
    public func checkReaders(stretch: Int = 10_000) async throws -> Int {
        var next: AccountKey?
        var repaired = 0
        repeat {
            let checked = try vault.checkReaders(after: next, limit: stretch)
            repaired += checked.repaired
            next = checked.next
            await Task.yield()
            try Task.checkCancellation()
        } while next != nil
        if repaired > 0 {
            vault.logger.warning(
                "tokens.db disagreed with keeper.db and was rebuilt from it",
                metadata: ["rows": "\(repaired)", "path": "\(tokensPath)"])
            try vault.write { _ in
                try vault.insertEvent(
                    .readersRepaired, app: nil, sellerID: nil,
                    detail: "rewrote \(repaired) tokens.db rows from keeper.db",
                    at: vault.clock.now())
            }
        }
        return repaired
    }

    /// Compares tokens.db with keeper.db and rewrites the rows that differ;
    /// returns how many. Runs at open; exposed for tests and operators.
    @discardableResult
    public func repairReadersDatabase() throws -> Int {
        try vault.ensureOpen()
        return try vault.repairReaders()
    }
}
extension SQLiteAccountStore: OperatorStore {}
