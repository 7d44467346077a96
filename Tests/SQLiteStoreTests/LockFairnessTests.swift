import CSQLite
import Foundation
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import SQLiteStore

/// Another process's write transactions one after another (an import) must
/// not keep a writer waiting for its busy timeout: the busy handler polls
/// often enough to take the lock in the first gaps between them, and the
/// import's transactions are bounded in time (issue 15, case 3).
@Suite struct LockFairnessTests {
    let scratch: ScratchDirectory
    let path: String

    init() throws {
        scratch = try ScratchDirectory()
        path = scratch.file("fairness.db")
        let setup = try SQLiteConnection(path: path)
        try setup.setJournalMode("WAL")
        try setup.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
        try setup.close()
    }

    @Test func aWaitingWriterTakesTheLockInTheFirstGapsBetweenAnotherWritersTransactions() throws {
        // Transactions of 195 ms, 5 ms apart, as an import's batches follow
        // each other. SQLite's own handler polls 1, 3, 8, … 178, 228 ms after
        // the wait began, then every 100 ms: always 28 or 128 ms into the
        // other writer's 200 ms rhythm, never in a gap, until its timeout.
        let holder = TransactionTrain(path: path, hold: .milliseconds(195), gap: .milliseconds(5))
        holder.start()
        defer { holder.stop() }
        let waiter = try SQLiteConnection(path: path)
        try waiter.setBusyTimeout(.seconds(5))
        for round in 0..<3 {
            #expect(holder.waitUntilHolding(), "the other writer never took the lock")
            let gapsBefore = holder.gaps
            let started = ContinuousClock.now
            try waiter.execute("BEGIN IMMEDIATE")
            let waited = ContinuousClock.now - started
            let gap = holder.gaps - gapsBefore
            try waiter.execute("INSERT INTO items DEFAULT VALUES")
            try waiter.execute("COMMIT")
            // The first gap, or a later one on a machine too busy to wake
            // the waiter within 5 ms.
            #expect(gap <= 3, "round \(round): the lock was taken in gap \(gap), after \(waited)")
            #expect(waited < .seconds(1), "round \(round): waited \(waited)")
        }
        holder.stop()
        #expect(holder.failure == nil, "\(holder.failure.map { "\($0)" } ?? "")")
        #expect(try waiter.cachedStatement("SELECT count(*) FROM items").firstRow { $0.int64(0) } == 3)
    }

    @Test func theBusyTimeoutStillEndsTheWait() throws {
        let holder = try SQLiteConnection(path: path)
        try holder.execute("BEGIN IMMEDIATE")
        defer { try? holder.execute("ROLLBACK") }
        let waiter = try SQLiteConnection(path: path)
        try waiter.setBusyTimeout(.milliseconds(200))
        var started = ContinuousClock.now
        let error = try #require(throws: SQLiteError.self) { try waiter.execute("BEGIN IMMEDIATE") }
        let waited = ContinuousClock.now - started
        #expect(error.isBusy)
        #expect(waited >= .milliseconds(200) && waited < .seconds(1), "waited \(waited)")

        try waiter.setBusyTimeout(.zero)
        started = ContinuousClock.now
        let atOnce = try #require(throws: SQLiteError.self) { try waiter.execute("BEGIN IMMEDIATE") }
        #expect(atOnce.isBusy)
        #expect(ContinuousClock.now - started < .milliseconds(100))
    }

    @Test func anImportCommitsOnceItsTransactionHasRunItsTime() async throws {
        let store = try await scratch.open()
        let records = (0..<100).map { index in
            ImportRecord(
                sellerID: String(format: "s%03d", index), refreshToken: Tokens.refresh(), accessToken: Tokens.access(),
                expireTime: Moments.farFuture, refreshTokenValidTime: Moments.farFuture)
        }
        // Ten of them already managed: skipped, whichever transaction they fall in.
        _ = try await store.importAccounts(Array(records[40..<50]), now: Moments.now)

        // No time at all: each transaction stores one stretch of rows
        // between two looks at the clock, and commits.
        let summary = try await store.importAccounts(records, transactionBudget: .zero, now: Moments.now)
        #expect(summary.imported == 90)
        #expect(summary.alreadyManaged == records[40..<50].map(\.key))
        let keeper = try SQLiteConnection(path: scratch.keeperPath)
        let transactions = try keeper.cachedStatement(
            "SELECT count(DISTINCT change_seq) FROM accounts WHERE seller_id NOT BETWEEN 's040' AND 's049'"
        ).firstRow { $0.int64(0) }
        let stretch = AccountVault.importBudgetCheckRows
        #expect(transactions == Int64((records.count + stretch - 1) / stretch))
        #expect(
            try keeper.cachedStatement("SELECT count(*) FROM events WHERE kind = 'imported'").firstRow { $0.int64(0) }
                == 100)
        #expect(try await store.allAccounts().count == 100)
        let tokens = try SQLiteConnection(path: scratch.tokensPath)
        #expect(try tokens.cachedStatement("SELECT count(*) FROM tokens").firstRow { $0.int64(0) } == 100)

        // A whole batch fits in a generous budget: one transaction.
        let more = (100..<150).map { index in
            ImportRecord(sellerID: String(format: "s%03d", index), refreshToken: Tokens.refresh())
        }
        #expect(try await store.importAccounts(more, transactionBudget: .seconds(60), now: Moments.now).imported == 50)
        #expect(
            try keeper.cachedStatement("SELECT count(DISTINCT change_seq) FROM accounts WHERE seller_id >= 's100'")
                .firstRow { $0.int64(0) } == 1)
        try await store.close()
    }
}

extension SQLiteAccountStore {
    /// The import with a transaction budget of the test's choosing.
    fileprivate func importAccounts(_ records: [ImportRecord], transactionBudget: Duration, now: Timestamp) throws
        -> ImportSummary
    {
        try vault.importAccounts(
            records, replace: false, batchSize: records.count, now: now, transactionBudget: transactionBudget)
    }
}

/// Another writer on its own thread and connection: write transactions of
/// `hold` each, `gap` apart, until stopped, as an import writes batch after
/// batch. It waits (polling, busy timeout 5 s) when someone else has the lock.
private final class TransactionTrain: @unchecked Sendable {
    let path: String
    let hold: Duration
    let gap: Duration
    // NSLock rather than Mutex: ThreadSanitizer sees it on Linux.
    private let lock = NSLock()
    private let finished = NSCondition()
    private var stopped = false
    private var done = false
    private var holding = false
    private var gapCount = 0
    private var error: (any Error)?

    init(path: String, hold: Duration, gap: Duration) {
        self.path = path
        self.hold = hold
        self.gap = gap
    }

    /// Transactions committed so far: the gaps opened.
    var gaps: Int { lock.withLock { gapCount } }
    var failure: (any Error)? { lock.withLock { error } }

    func start() {
        Thread.detachNewThread { [self] in
            do {
                let connection = try SQLiteConnection(path: path)
                try connection.setBusyTimeout(.seconds(5))
                while !lock.withLock({ stopped }) {
                    try connection.execute("BEGIN IMMEDIATE")
                    lock.withLock { holding = true }
                    Self.sleep(hold)
                    try connection.execute("COMMIT")
                    lock.withLock {
                        holding = false
                        gapCount += 1
                    }
                    Self.sleep(gap)
                }
                try connection.close()
            } catch {
                lock.withLock { self.error = error }
            }
            finished.withLock {
                done = true
                finished.broadcast()
            }
        }
    }

    /// Waits (at most 5 s) until a transaction of this writer is open.
    func waitUntilHolding() -> Bool {
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if lock.withLock({ holding }) { return true }
            usleep(1_000)
        }
        return false
    }

    /// Stops after the transaction in progress and waits for the thread.
    func stop() {
        lock.withLock { stopped = true }
        finished.withLock {
            while !done { finished.wait() }
        }
    }

    private static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        usleep(useconds_t(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }
}
