import Foundation
import Logging
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import PostgresStore

/// The PostgreSQL store against a real server: the schema and its version,
/// imports, leases raced by two nodes, rotations fenced by the refresh token,
/// changes announced by NOTIFY, the nodes sharing the sellers, the readers'
/// role, several apps in one schema, and the copy `migrate --to postgres` makes.
///
/// One server for the suite (``SharedPostgres``); every test works in a schema
/// of its own, so the tests run in parallel.
@Suite(
    .enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (apt-get install postgresql)"),
    .sharedPostgres, .timeLimit(.minutes(1)))
struct PostgresAccountStoreTests {
    let postgres: SharedPostgres.Database
    let logs = LogRecorder()

    init() throws {
        postgres = try #require(SharedPostgres.current, "the suite's server did not start")
    }

    private func open(schema: String, database: String? = nil) async throws -> PostgresAccountStore {
        var logger = logs.logger()
        // What the daemon logs at most (Daemon.postgresLogger).
        logger.logLevel = .info
        return try await postgres.open(schema: schema, database: database, logger: logger)
    }

    /// Whether a log line carries one of `secrets`.
    private func logsLeak(_ secrets: [Secret]) -> Bool {
        logs.rendered.contains { line in secrets.contains { line.contains($0.exposedValue) } }
    }

    // MARK: - Schema

    @Test func openingAnEmptyDatabaseCreatesTheSchemaOnceAndANewerOneIsRefused() async throws {
        let database = SharedPostgres.uniqueName("d_")
        try postgres.server.createDatabase(database, owner: postgres.role)
        let schema = PostgresSettings.defaultSchema

        // Two nodes starting at once on an empty database: one creates the
        // schema, the other waits and finds it done.
        async let openingFirst = open(schema: schema, database: database)
        async let openingSecond = open(schema: schema, database: database)
        let (first, second) = try await (openingFirst, openingSecond)
        #expect(try await first.schemaVersion() == PostgresSchema.latestVersion)
        #expect(try await second.schemaVersion() == PostgresSchema.latestVersion)
        #expect(
            try postgres.psql(
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM \(schema).schema_migrations",
                database: database) == "1,2,3,4,5")
        let relations = try postgres.psql(
            """
            SELECT table_name || ' ' || table_type FROM information_schema.tables
            WHERE table_schema = '\(schema)' ORDER BY table_name
            """, database: database)
        #expect(
            relations.split(separator: "\n") == [
                "accounts BASE TABLE", "deliveries BASE TABLE", "events BASE TABLE", "keys BASE TABLE",
                "nodes BASE TABLE", "outbox BASE TABLE", "schema_migrations BASE TABLE", "seller_tokens VIEW",
                "tokens VIEW", "used_states BASE TABLE", "valid_tokens VIEW", "ventures BASE TABLE",
            ])
        let refreshToken = makeToken("RT")
        let summary = try await first.importAccounts(
            [ImportRecord(sellerID: "1001", refreshToken: refreshToken)], now: Moments.now)
        #expect(summary.imported == 1)
        first.close()
        second.close()

        // Opening again changes nothing.
        let again = try await open(schema: schema, database: database)
        #expect(try await again.schemaVersion() == PostgresSchema.latestVersion)
        #expect(try postgres.psql("SELECT count(*) FROM \(schema).schema_migrations", database: database) == "5")
        #expect(try await again.account("1001")?.refreshToken == refreshToken)
        again.close()

        // A schema written by a newer tokenkeeper is refused, untouched.
        try postgres.psql("INSERT INTO \(schema).schema_migrations (version) VALUES (999)", database: database)
        let error = await #expect(throws: PostgresStoreError.self) {
            let store = try await open(schema: schema, database: database)
            store.close()
        }
        if case .schemaTooNew(let found, let supported)? = error {
            #expect(found == 999)
            #expect(supported == PostgresSchema.latestVersion)
        } else {
            Issue.record("expected schemaTooNew, got \(String(describing: error))")
        }
        #expect(try postgres.psql("SELECT count(*) FROM \(schema).accounts", database: database) == "1")
        #expect(
            try postgres.psql(
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM \(schema).schema_migrations",
                database: database) == "1,2,3,4,5,999")
    }

    // MARK: - Import

    @Test func importStoresNewSellersSkipsManagedOnesAndRefusesBadRecordsByIndex() async throws {
        let store = try await open(schema: SharedPostgres.uniqueName("t_"))
        defer { store.close() }
        let refresh1 = makeToken("RT")
        let access1 = makeToken("AT")
        let refresh2 = makeToken("RT")
        let records = [
            ImportRecord(
                sellerID: "1001", refreshToken: refresh1, accessToken: access1, expireTime: Moments.farFuture,
                accessTokenLifetime: .seconds(86_400), profile: SellerProfile(userNick: "alpha")),
            ImportRecord(sellerID: "1002", refreshToken: refresh2, nextRefreshAt: Moments.now + .seconds(600)),
            ImportRecord(sellerID: "1003", refreshToken: Secret("")),
            ImportRecord(sellerID: "1004", refreshToken: makeToken("RT"), accessToken: makeToken("AT")),
        ]
        let summary = try await store.importAccounts(records, now: Moments.now)
        #expect(summary.imported == 2)
        #expect(summary.refused.map(\.index) == [2, 3])
        #expect(summary.refused.map(\.sellerID) == ["1003", "1004"])
        #expect(summary.alreadyManaged.isEmpty)
        #expect(try await store.accountCount() == 2)
        #expect(try await store.account("1003") == nil)
        #expect(try await store.account("1004") == nil)

        let first = try #require(try await store.account("1001"))
        #expect(first.refreshToken == refresh1)
        #expect(first.accessToken == access1)
        #expect(first.expireTime == Moments.farFuture)
        #expect(first.status == .active)
        #expect(first.profile.userNick == "alpha")
        #expect(first.nextRefreshAt == Moments.now)
        let second = try #require(try await store.account("1002"))
        #expect(second.refreshToken == refresh2)
        #expect(second.accessToken == nil)
        #expect(second.status == .active)
        #expect(second.nextRefreshAt == Moments.now + .seconds(600))

        // The same seller again, without replace: skipped, its token kept.
        let newer = makeToken("RT")
        let again = try await store.importAccounts(
            [ImportRecord(sellerID: "1001", refreshToken: newer)], now: Moments.now + .seconds(1))
        #expect(again.imported == 0)
        #expect(again.alreadyManaged == ["1001"])
        #expect(try await store.account("1001")?.refreshToken == refresh1)

        // With replace, the record wins.
        let replaced = try await store.importAccounts(
            [ImportRecord(sellerID: "1001", refreshToken: newer)], replace: true, now: Moments.now + .seconds(2))
        #expect(replaced.imported == 1)
        #expect(try await store.account("1001")?.refreshToken == newer)

        // A seller waiting for re-authorization takes the imported tokens without replace.
        #expect(
            try await store.markReauthRequired(
                account: "1002", sent: refresh2, reason: "IllegalRefreshToken", requestID: nil,
                now: Moments.now + .seconds(3)))
        let revived = makeToken("RT")
        let reimported = try await store.importAccounts(
            [ImportRecord(sellerID: "1002", refreshToken: revived)], now: Moments.now + .seconds(4))
        #expect(reimported.imported == 1)
        let back = try #require(try await store.account("1002"))
        #expect(back.refreshToken == revived)
        #expect(back.status == .active)
        #expect(back.statusReason == nil)

        // Small batches store the same as one.
        let batch = (0..<5).map { ImportRecord(sellerID: "20\($0)", refreshToken: makeToken("RT")) }
        let batched = try await store.importAccounts(batch, batchSize: 2, now: Moments.now)
        #expect(batched.imported == 5)
        #expect(try await store.accountCount() == 7)
        #expect(!logsLeak([refresh1, access1, refresh2, newer, revived] + batch.map(\.refreshToken)))
    }

    // MARK: - Leases

    @Test func twoNodesRacingForALeaseGetItOneAtATime() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        async let openingA = open(schema: schema)
        async let openingB = open(schema: schema)
        let (nodeA, nodeB) = try await (openingA, openingB)
        defer {
            nodeA.close()
            nodeB.close()
        }
        _ = try await nodeA.importAccounts(
            [ImportRecord(sellerID: "3001", refreshToken: makeToken("RT"))], now: Moments.now)
        let nodes = [("node-a", nodeA), ("node-b", nodeB)]

        for round in 0..<20 {
            let now = Moments.now + .seconds(round)
            let until = now + .seconds(60)
            let started = ContinuousClock.now
            let results = try await withThrowingTaskGroup(of: (Int, LeaseResult).self) { group in
                for (index, (owner, store)) in nodes.enumerated() {
                    group.addTask {
                        (index, try await store.acquireLease(account: "3001", owner: owner, until: until, now: now))
                    }
                }
                var results: [LeaseResult?] = [nil, nil]
                for try await (index, result) in group { results[index] = result }
                return results.compactMap { $0 }
            }
            let winners = results.indices.filter { if case .acquired = results[$0] { true } else { false } }
            guard winners.count == 1, let winner = winners.first else {
                Issue.record("round \(round): \(winners.count) nodes acquired the lease")
                return
            }
            let loser = 1 - winner
            let (winnerOwner, winnerStore) = nodes[winner]
            let (loserOwner, loserStore) = nodes[loser]
            if case .acquired(let account) = results[winner] {
                #expect(account.lease == Lease(owner: winnerOwner, expiresAt: until))
            }
            // The lease is kept on PostgreSQL's clock and given back on ours:
            // its end is `until`, less at most the time the statements took
            // (the loser read what was left of it).
            let took = ContinuousClock.now - started
            if case .busy(let lease) = results[loser] {
                #expect(lease.owner == winnerOwner, "round \(round)")
                #expect(lease.expiresAt <= until + .milliseconds(5), "round \(round)")
                #expect(
                    until - lease.expiresAt <= took + .milliseconds(5), "round \(round): \(until - lease.expiresAt)")
            } else {
                Issue.record("round \(round): the loser got \(String(describing: results[loser]))")
            }

            // Given back, the lease goes to the other node, with nothing lost.
            try await winnerStore.releaseLease(account: "3001", owner: winnerOwner)
            let after = try await loserStore.acquireLease(account: "3001", owner: loserOwner, until: until, now: now)
            guard case .acquired(let account) = after else {
                Issue.record("round \(round): the released lease was not taken: \(after)")
                return
            }
            #expect(account.lease == Lease(owner: loserOwner, expiresAt: until))
            #expect(account.lastAnswerLost == false)
            try await loserStore.releaseLease(account: "3001", owner: loserOwner)
        }
        #expect(try await nodeA.account("3001")?.lease == nil)
    }

    @Test func anExpiredLeaseIsTakenOverAndTheLostAnswerRemembered() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let nodeA = try await open(schema: schema)
        let nodeB = try await open(schema: schema)
        defer {
            nodeA.close()
            nodeB.close()
        }
        _ = try await nodeA.importAccounts(
            [ImportRecord(sellerID: "3002", refreshToken: makeToken("RT"))], now: Moments.now)
        // Leases end on PostgreSQL's clock: a long one first, so that the
        // next statement comes inside it however loaded the machine is.
        let firstUntil = Moments.now + .seconds(60)
        let first = try await nodeA.acquireLease(account: "3002", owner: "node-a", until: firstUntil, now: Moments.now)
        guard case .acquired = first else {
            Issue.record("expected acquired, got \(first)")
            return
        }

        let secondUntil = Moments.now + .seconds(90)
        let early = try await nodeB.acquireLease(
            account: "3002", owner: "node-b", until: secondUntil, now: Moments.now)
        guard case .busy(let held) = early else {
            Issue.record("expected busy while the lease runs, got \(early)")
            return
        }
        #expect(held.owner == "node-a")
        #expect(held.expiresAt <= firstUntil)

        // node-a renews it for 300 ms and goes quiet: that one is really
        // waited out.
        let renewed = try await nodeA.acquireLease(
            account: "3002", owner: "node-a", until: Moments.now + .milliseconds(300), now: Moments.now)
        guard case .acquired = renewed else {
            Issue.record("expected node-a to renew its own lease, got \(renewed)")
            return
        }
        var late = early
        let deadline = ContinuousClock.now + .seconds(10)
        while case .busy = late, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            late = try await nodeB.acquireLease(account: "3002", owner: "node-b", until: secondUntil, now: Moments.now)
        }
        guard case .acquired(let account) = late else {
            Issue.record("expected the expired lease to be taken over, got \(late)")
            return
        }
        #expect(account.lease == Lease(owner: "node-b", expiresAt: secondUntil))
        // node-a may have sent the refresh token and lost the answer.
        #expect(account.lastAnswerLost == true)

        // The old holder's release is a no-op now.
        try await nodeA.releaseLease(account: "3002", owner: "node-a")
        let stored = try await nodeA.account("3002")
        #expect(stored?.lease?.owner == "node-b")
        #expect(stored?.lastAnswerLost == true)
        #expect(
            try await nodeA.acquireLease(account: "nobody", owner: "node-a", until: secondUntil, now: Moments.now)
                == .notFound)
    }

    // MARK: - Fencing

    @Test func aRotationCommitsOnlyOverTheRefreshTokenThatWasSent() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let nodeA = try await open(schema: schema)
        let nodeB = try await open(schema: schema)
        defer {
            nodeA.close()
            nodeB.close()
        }
        let sent = makeToken("RT")
        _ = try await nodeA.importAccounts([ImportRecord(sellerID: "4001", refreshToken: sent)], now: Moments.now)

        // node-b took over an expired lease and sent the token first.
        let rotated = makeGrant(seller: "4001", receivedAt: Moments.now + .seconds(1))
        let nextRefreshAt = Moments.now + .seconds(3_600)
        #expect(
            try await nodeB.commitRotation(
                account: "4001", sent: sent, grant: rotated, nextRefreshAt: nextRefreshAt,
                now: Moments.now + .seconds(1)))
        let stored = try #require(try await nodeA.account("4001"))
        #expect(stored.refreshToken == rotated.refreshToken)
        #expect(stored.accessToken == rotated.accessToken)
        #expect(stored.expireTime == rotated.expireTime)
        #expect(stored.nextRefreshAt == nextRefreshAt)
        #expect(stored.refreshedAt == rotated.receivedAt)

        // node-a, paused with the same token, comes back with its own answer: refused.
        let stale = makeGrant(seller: "4001", receivedAt: Moments.now + .seconds(2))
        #expect(
            try await nodeA.commitRotation(
                account: "4001", sent: sent, grant: stale, nextRefreshAt: Moments.now + .seconds(60),
                now: Moments.now + .seconds(2)) == false)
        #expect(try await nodeA.account("4001") == stored)

        // A rejection of the old token does not touch the account...
        #expect(
            try await nodeA.markReauthRequired(
                account: "4001", sent: sent, reason: "IllegalRefreshToken", requestID: "req-2",
                now: Moments.now + .seconds(3)) == false)
        #expect(try await nodeA.account("4001")?.status == .active)

        // ...a rejection of the current one marks it.
        #expect(
            try await nodeA.markReauthRequired(
                account: "4001", sent: try #require(rotated.refreshToken), reason: "IllegalRefreshToken",
                requestID: "req-3", now: Moments.now + .seconds(4)))
        let marked = try #require(try await nodeA.account("4001"))
        #expect(marked.status == .reauthRequired)
        #expect(marked.statusReason == "IllegalRefreshToken")
        #expect(marked.refreshToken == rotated.refreshToken)

        // The history holds what happened, and no token.
        #expect(
            try postgres.psql("SELECT string_agg(kind, ',' ORDER BY id) FROM \(schema).events WHERE seller_id = '4001'")
                == "imported,refreshed,reauth_required")
        let details = try postgres.psql("SELECT coalesce(detail, '') FROM \(schema).events")
        let secrets = [sent, rotated.refreshToken, rotated.accessToken, stale.refreshToken, stale.accessToken]
            .compactMap { $0 }
        let detailsLeak = secrets.contains { details.contains($0.exposedValue) }
        #expect(detailsLeak == false)
        #expect(!logsLeak(secrets))
    }

    @Test func aRotationTheSchemaRefusesFailsOnlyThatAccount() async throws {
        let store = try await open(schema: SharedPostgres.uniqueName("t_"))
        defer { store.close() }
        let sent = makeToken("RT")
        _ = try await store.importAccounts([ImportRecord(sellerID: "4002", refreshToken: sent)], now: Moments.now)
        // An empty refresh token breaks the table's CHECK.
        let broken = makeGrant(seller: "4002", refresh: Secret(""), receivedAt: Moments.now)
        let error = await #expect(throws: PostgresStoreError.self) {
            try await store.commitRotation(
                account: "4002", sent: sent, grant: broken, nextRefreshAt: Moments.now + .seconds(60),
                now: Moments.now)
        }
        #expect(error.map { StoreFailureScope.of($0) } == .account)
        #expect(try await store.account("4002")?.refreshToken == sent)
    }

    @Test func aFailureIsRecordedAndReleasesTheLease() async throws {
        let store = try await open(schema: SharedPostgres.uniqueName("t_"))
        defer { store.close() }
        let sent = makeToken("RT")
        _ = try await store.importAccounts([ImportRecord(sellerID: "4003", refreshToken: sent)], now: Moments.now)
        _ = try await store.acquireLease(
            account: "4003", owner: "node-a", until: Moments.now + .seconds(60), now: Moments.now)
        let failure = GatewayFailure(
            .transient, code: "Timeout", message: "no answer within 30 s", requestID: "req-5", answerMayBeLost: true)
        let retryAt = Moments.now + .seconds(120)
        try await store.recordFailure(
            account: "4003", owner: "node-a", failure: failure, failedAttempts: 2, nextRefreshAt: retryAt,
            now: Moments.now)
        let failed = try #require(try await store.account("4003"))
        #expect(failed.failedAttempts == 2)
        #expect(failed.lastError == "Timeout: no answer within 30 s")
        #expect(failed.lastRequestID == "req-5")
        #expect(failed.nextRefreshAt == retryAt)
        #expect(failed.lastAnswerLost == true)
        #expect(failed.lease == nil)
        #expect(failed.status == .active)
        #expect(failed.refreshToken == sent)

        // The next success clears all of it.
        #expect(
            try await store.commitRotation(
                account: "4003", sent: sent, grant: makeGrant(seller: "4003", receivedAt: Moments.now),
                nextRefreshAt: Moments.now + .seconds(3_600), now: Moments.now))
        let refreshed = try #require(try await store.account("4003"))
        #expect(refreshed.failedAttempts == 0)
        #expect(refreshed.lastError == nil)
        #expect(refreshed.lastAnswerLost == false)
    }

    @Test func pruningDeletesOnlyEventsBeforeTheCutoff() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let store = try await open(schema: schema)
        defer { store.close() }
        let longAgo = Moments.now - .seconds(10 * 86_400)
        let records = (0..<5).map { ImportRecord(sellerID: "490\($0)", refreshToken: makeToken("RT")) }
        _ = try await store.importAccounts(records, now: longAgo)
        #expect(
            try await store.commitRotation(
                account: "4900", sent: records[0].refreshToken,
                grant: makeGrant(seller: "4900", receivedAt: Moments.now), nextRefreshAt: Moments.now + .seconds(3_600),
                now: Moments.now))

        // In batches smaller than what there is to delete.
        #expect(try await store.pruneEvents(before: Moments.now - .seconds(86_400), batchSize: 2) == 5)
        #expect(
            try postgres.psql("SELECT string_agg(seller_id || ' ' || kind, ',') FROM \(schema).events")
                == "4900 refreshed")
        #expect(try await store.pruneEvents(before: Moments.now - .seconds(86_400), batchSize: 2) == 0)
        #expect(try await store.accountCount() == 5)
    }

    // MARK: - Changes (LISTEN/NOTIFY)

    @Test func changesMadeByAnotherNodeArriveByNotify() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let nodeA = try await open(schema: schema)
        let nodeB = try await open(schema: schema)
        defer {
            nodeA.close()
            nodeB.close()
        }
        let tokens = (0..<3).map { _ in makeToken("RT") }
        _ = try await nodeB.importAccounts(
            tokens.enumerated().map { ImportRecord(sellerID: "500\($0.offset)", refreshToken: $0.element) },
            now: Moments.now)
        let cursor = try await nodeA.changes(since: nil).cursor
        #expect(try await nodeA.changes(since: cursor).changed.isEmpty)

        let cluster = Task {
            await nodeA.runCluster(
                node: "node-a", host: "host-a", pid: 1, heartbeat: .milliseconds(200), takeover: .seconds(5)
            ) { _ in }
        }
        defer { cluster.cancel() }

        // Once listening, node-a reports everything once: what was announced
        // while no one listened.
        let everything = try await poll { try await nonEmpty(nodeA.changes(since: cursor).changed) }
        #expect(everything.map { Set($0.map(\.key)) } == ["5000", "5001", "5002"])
        #expect(try await nodeA.changes(since: cursor).changed.isEmpty)

        // An account of another app is announced with its app: the same
        // seller id, another account.
        let lazada = AccountKey(app: "lazada_sg", sellerID: "5001")
        _ = try await nodeB.enroll(
            app: lazada.app, grant: makeGrant(seller: lazada.sellerID, receivedAt: Moments.now),
            nextRefreshAt: Moments.now, now: Moments.now)
        let other = try await poll { try await nonEmpty(nodeA.changes(since: cursor).changed) }
        #expect(other?.map(\.key) == [lazada])

        // A rotation committed by node-b moves the seller's deadline on node-a.
        let nextRefreshAt = Moments.now + .seconds(600)
        #expect(
            try await nodeB.commitRotation(
                account: "5001", sent: tokens[1], grant: makeGrant(seller: "5001", receivedAt: Moments.now),
                nextRefreshAt: nextRefreshAt, now: Moments.now))
        let rotated = try await poll { try await nonEmpty(nodeA.changes(since: cursor).changed) }
        #expect(rotated?.deadlines == [ScheduledAccount("5001", due: nextRefreshAt)])
        // Nothing announced since: nothing to report.
        #expect(try await nodeA.changes(since: cursor).changed.isEmpty)

        // A lease changes no deadline and is not announced.
        _ = try await nodeB.acquireLease(
            account: "5002", owner: "node-b", until: Moments.now + .seconds(60), now: Moments.now)

        // A removed seller is reported without a deadline.
        try await nodeB.remove(account: "5000", now: Moments.now)
        let removed = try await poll { try await nonEmpty(nodeA.changes(since: cursor).changed) }
        #expect(removed == [ScheduledAccount("5000", due: nil)])
        #expect(try await nodeA.changes(since: cursor).changed.isEmpty)
    }

    /// Any role may NOTIFY the channel: a notification is a hint. Full
    /// reloads are spaced by `fullReloadInterval` whatever arrives, and the
    /// announced set is bounded (past it, one full reload instead).
    @Test func notificationsAreHintsBoundedAndRateLimited() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        var settings = try PostgresSettings(
            url: postgres.server.url(user: postgres.role, database: postgres.name), password: postgres.password,
            schema: schema, tls: .disable, maximumConnections: 4)
        settings.fullReloadInterval = .seconds(1)
        settings.maxPendingChanges = 50
        var logger = logs.logger()
        logger.logLevel = .info
        let node = try await PostgresAccountStore.open(settings: settings, logger: logger)
        defer { node.close() }
        _ = try await node.importAccounts(
            (0..<3).map { ImportRecord(sellerID: "520\($0)", refreshToken: makeToken("RT")) }, now: Moments.now)
        let cursor = try await node.changes(since: nil).cursor
        let cluster = Task {
            await node.runCluster(
                node: "node-n", host: "host-n", pid: 1, heartbeat: .milliseconds(200), takeover: .seconds(5)
            ) { _ in }
        }
        defer { cluster.cancel() }
        #expect(try await poll { try await nonEmpty(node.changes(since: cursor).changed) } != nil, "listening")

        // A stranger asks for a full reload twenty times in two seconds.
        let channel = "\(schema)_changes"
        var fullReloads = 0
        let start = ContinuousClock.now
        for _ in 0..<20 {
            try postgres.psql("SELECT pg_notify('\(channel)', '*')")
            if try await node.changes(since: cursor).changed.count == 3 { fullReloads += 1 }
            try await Task.sleep(for: .milliseconds(100))
        }
        let elapsed = ContinuousClock.now - start
        #expect(fullReloads >= 1 && Double(fullReloads) <= elapsed / .seconds(1) + 1, "\(fullReloads) in \(elapsed)")

        // Made-up sellers, past the bound, and payloads that cannot name accounts.
        try postgres.psql(
            "SELECT pg_notify('\(channel)', 'default:fake-' || g) FROM generate_series(1, 500) g; "
                + "SELECT pg_notify('\(channel)', E'default:bad\\nid')")
        var fakes = 0
        var reloaded = false
        let deadline = ContinuousClock.now + .seconds(4)
        while ContinuousClock.now < deadline {
            let changed = try await node.changes(since: cursor).changed
            fakes += changed.filter { $0.key.sellerID.hasPrefix("fake-") }.count
            #expect(!changed.contains { $0.key.sellerID.contains("\n") })
            if changed.count == 3 { reloaded = true }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(reloaded, "past the bound, one full reload")
        #expect(fakes <= settings.maxPendingChanges, "\(fakes) made-up sellers looked up")
    }

    /// A failed attempt's backoff (`next_refresh_at`) reaches the other
    /// nodes as it is: not capped by the access token's expiry, which for a
    /// failing seller is already past (every node would retry it every tick).
    @Test func aFailureAnnouncedElsewhereKeepsItsBackoff() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let nodeA = try await open(schema: schema)
        let nodeB = try await open(schema: schema)
        defer {
            nodeA.close()
            nodeB.close()
        }
        // Expires 2 s from now with a 20 s life: its cap (a fifth of the life
        // before expiry) is 2 s ago.
        _ = try await nodeB.importAccounts(
            [
                ImportRecord(
                    sellerID: "5100", refreshToken: makeToken("RT"), accessToken: makeToken("AT"),
                    expireTime: Moments.now + .seconds(2), accessTokenLifetime: .seconds(20))
            ], now: Moments.now)
        #expect(
            try await nodeA.loadSchedule().deadlines == [
                ScheduledAccount("5100", due: Moments.now - .seconds(2))
            ])
        let cursor = try await nodeA.changes(since: nil).cursor
        let cluster = Task {
            await nodeA.runCluster(
                node: "node-a", host: "host-a", pid: 1, heartbeat: .milliseconds(200), takeover: .seconds(5)
            ) { _ in }
        }
        defer { cluster.cancel() }
        _ = try await poll { try await nonEmpty(nodeA.changes(since: cursor).changed) }

        let retryAt = Moments.now + .seconds(600)
        _ = try await nodeB.acquireLease(
            account: "5100", owner: "node-b", until: Moments.now + .seconds(60), now: Moments.now)
        try await nodeB.recordFailure(
            account: "5100", owner: "node-b",
            failure: GatewayFailure(.transient, code: "ServiceUnavailable", message: "try later"),
            failedAttempts: 3, nextRefreshAt: retryAt, now: Moments.now)
        let announced = try await poll { try await nonEmpty(nodeA.changes(since: cursor).changed) }
        #expect(announced?.deadlines == [ScheduledAccount("5100", due: retryAt)])
    }

    // MARK: - Cluster

    @Test func eachSellerHasExactlyOneFirstNode() {
        let sellers = (0..<1000).map { AccountKey(app: .default, sellerID: "\(3_000_000_000 + $0)") }
        let viewA = ClusterView(node: "a", others: ["b"], takeover: .seconds(5))
        let viewB = ClusterView(node: "b", others: ["a"], takeover: .seconds(5))
        let firstOnA = Set(sellers.filter { viewA.rank(of: $0) == 0 })
        let firstOnB = Set(sellers.filter { viewB.rank(of: $0) == 0 })
        #expect((400...600).contains(firstOnA.count))
        #expect(firstOnA.isDisjoint(with: firstOnB))
        #expect(firstOnA.union(firstOnB).count == sellers.count)

        // Three nodes rank every seller 0, 1 and 2 between them.
        let nodes = ["a", "b", "c"]
        let views = nodes.map { node in
            ClusterView(node: node, others: nodes.filter { $0 != node }, takeover: .seconds(5))
        }
        let misranked = sellers.filter { seller in views.map { $0.rank(of: seller) }.sorted() != [0, 1, 2] }
        #expect(misranked.isEmpty)
        // Alone, a node is first for every seller.
        #expect(sellers.allSatisfy { ClusterView(node: "a", takeover: .seconds(5)).rank(of: $0) == 0 })
    }

    @Test func theSecondNodeWaitsTheTakeoverButNeverPastHalfTheTimeLeft() throws {
        let viewA = ClusterView(node: "a", others: ["b"], takeover: .seconds(5))
        let viewB = ClusterView(node: "b", others: ["a"], takeover: .seconds(5))
        let sellers = (0..<100).map { AccountKey(app: .default, sellerID: "\(3_000_000_000 + $0)") }
        let seller = try #require(sellers.first { viewA.rank(of: $0) == 0 })
        let due = Moments.now
        for expireTime in [due + .seconds(60), due + .seconds(4), nil] {
            #expect(viewA.deadline(account: seller, due: due, expireTime: expireTime) == due)
        }
        #expect(viewB.deadline(account: seller, due: due, expireTime: due + .seconds(60)) == due + .seconds(5))
        #expect(viewB.deadline(account: seller, due: due, expireTime: due + .seconds(4)) == due + .seconds(2))
        #expect(viewB.deadline(account: seller, due: due, expireTime: nil) == due + .seconds(5))
    }

    @Test func liveNodesShareTheSellersAndALeavingNodeHandsThemBack() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let nodeA = try await open(schema: schema)
        let nodeB = try await open(schema: schema)
        defer {
            nodeA.close()
            nodeB.close()
        }
        let due = Moments.now + .seconds(600)
        let sellers = (0..<50).map { "\(3_000_000_000 + $0)" }
        _ = try await nodeA.importAccounts(
            sellers.map { ImportRecord(sellerID: $0, refreshToken: makeToken("RT"), nextRefreshAt: due) },
            now: Moments.now)
        let reportsA = LiveNodeReports()
        let reportsB = LiveNodeReports()
        let clusterA = Task {
            await nodeA.runCluster(
                node: "a", host: "host-a", pid: 101, heartbeat: .milliseconds(200), takeover: .seconds(5),
                onLiveNodes: reportsA.record)
            reportsA.finish()
        }
        let clusterB = Task {
            await nodeB.runCluster(
                node: "b", host: "host-b", pid: 102, heartbeat: .milliseconds(200), takeover: .seconds(5),
                onLiveNodes: reportsB.record)
            reportsB.finish()
        }
        defer {
            clusterA.cancel()
            clusterB.cancel()
        }

        let bothSeen = try await poll {
            reportsA.last == 2 && reportsB.last == 2 && nodeA.liveNodes == 2 && nodeB.liveNodes == 2 ? true : nil
        }
        #expect(bothSeen == true, "live nodes reported: a \(reportsA.all), b \(reportsB.all)")
        #expect(
            try postgres.psql("SELECT node || ' ' || host || ' ' || pid FROM \(schema).nodes ORDER BY node")
                == "a host-a 101\nb host-b 102")

        // Each seller is due first on one node, takeover later on the other.
        let shared = try await poll { () async throws -> Bool? in
            let onA = Dictionary(uniqueKeysWithValues: try await nodeA.loadSchedule().map { ($0.key.sellerID, $0.due) })
            let onB = Dictionary(uniqueKeysWithValues: try await nodeB.loadSchedule().map { ($0.key.sellerID, $0.due) })
            let split = sellers.allSatisfy { seller in
                let pair = [onA[seller] ?? nil, onB[seller] ?? nil]
                return pair == [due, due + .seconds(5)] || pair == [due + .seconds(5), due]
            }
            return split ? true : nil
        }
        #expect(shared == true)

        // Leaving, node b deletes its row: node a takes its sellers back.
        clusterB.cancel()
        let finished = try await poll { reportsB.hasFinished ? true : nil }
        #expect(finished == true, "node b's runCluster did not return after cancellation")
        let remaining = try postgres.psql("SELECT string_agg(node, ',' ORDER BY node) FROM \(schema).nodes")
        #expect(remaining == "a", "node b's row outlived its runCluster")
        let alone = try await poll { reportsA.last == 1 && nodeA.liveNodes == 1 ? true : nil }
        #expect(alone == true, "live nodes reported: a \(reportsA.all)")
        #expect(try await nodeA.loadSchedule().allSatisfy { $0.due == due })
    }

    // MARK: - Readers

    @Test func theReaderRoleReadsTheViewsAndNothingElse() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let store = try await open(schema: schema)
        defer { store.close() }
        let records = [
            ImportRecord(
                sellerID: "7001", refreshToken: makeToken("RT"), accessToken: makeToken("AT"),
                expireTime: Moments.farFuture),
            ImportRecord(
                sellerID: "7002", refreshToken: makeToken("RT"), accessToken: makeToken("AT"),
                expireTime: Moments.farFuture),
            // Expired.
            ImportRecord(
                sellerID: "7003", refreshToken: makeToken("RT"), accessToken: makeToken("AT"),
                expireTime: Moments.past),
            // No access token yet.
            ImportRecord(sellerID: "7004", refreshToken: makeToken("RT")),
            // Needs re-authorization.
            ImportRecord(
                sellerID: "7005", refreshToken: makeToken("RT"), accessToken: makeToken("AT"),
                expireTime: Moments.farFuture),
            // Disabled.
            ImportRecord(
                sellerID: "7006", refreshToken: makeToken("RT"), accessToken: makeToken("AT"),
                expireTime: Moments.farFuture),
        ]
        #expect(try await store.importAccounts(records, now: Moments.now).imported == records.count)
        #expect(
            try await store.markReauthRequired(
                account: "7005", sent: records[4].refreshToken, reason: "IllegalRefreshToken", requestID: nil,
                now: Moments.now))
        _ = try await store.setStatus(account: "7006", to: .disabled, now: Moments.now)
        _ = try await store.key(named: "callback-state", now: Moments.now) { "a state key" }

        // Creating the role needs CREATEROLE (or a superuser).
        try postgres.psql("ALTER ROLE \(postgres.role) CREATEROLE")
        _ = try await store.grantReaders(password: "pw")

        func asReader(_ sql: String) throws -> String {
            try postgres.server.psqlTCP(
                sql, database: postgres.name, user: PostgresAccountStore.readerRole, password: "pw")
        }
        #expect(try asReader("SELECT count(*) FROM \(schema).valid_tokens") == "2")
        #expect(
            try asReader("SELECT string_agg(seller_id, ',' ORDER BY seller_id) FROM \(schema).valid_tokens")
                == "7001,7002")
        #expect(try asReader("SELECT count(*) FROM \(schema).tokens") == "5")
        #expect(try asReader("SELECT count(*) FROM \(schema).seller_tokens") == "5")
        let accessTokensMatch =
            try asReader("SELECT access_token FROM \(schema).valid_tokens ORDER BY seller_id")
            == [records[0], records[1]].compactMap { $0.accessToken?.exposedValue }.joined(separator: "\n")
        #expect(accessTokensMatch)

        for forbidden in [
            "SELECT refresh_token FROM \(schema).accounts", "SELECT count(*) FROM \(schema).events",
            "SELECT count(*) FROM \(schema).nodes", "SELECT count(*) FROM \(schema).schema_migrations",
            // The callback's state key is a secret; the outbox and its state are the daemon's.
            "SELECT value FROM \(schema).keys", "SELECT count(*) FROM \(schema).outbox",
            "SELECT count(*) FROM \(schema).deliveries", "SELECT count(*) FROM \(schema).used_states",
            "SELECT count(*) FROM \(schema).ventures",
        ] {
            let error = #expect(throws: PostgresServerError.self, "\(forbidden)") { try asReader(forbidden) }
            #expect(error?.standardError.contains("permission denied") == true, "\(forbidden)")
        }
        // No view shows a refresh token.
        let error = #expect(throws: PostgresServerError.self) {
            try asReader("SELECT refresh_token FROM \(schema).tokens")
        }
        #expect(error?.standardError.contains("does not exist") == true)
    }

    // MARK: - Apps

    @Test func aSchemaOfThePreviousVersionIsMigratedWithEveryAccountInTheDefaultApp() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        // Version 4 as the previous release left it, with a seller, its
        // event, one of the daemon's own, and a reader's view over the contract.
        let previous = PostgresSchema.migrations.filter { $0.version <= 4 }
        let script =
            [
                "CREATE SCHEMA \(schema)",
                """
                CREATE TABLE \(schema).schema_migrations (
                    version integer NOT NULL PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                """,
            ] + previous.flatMap { $0.statements.map { PostgresSchema.sql($0, schema: schema) } } + [
                "INSERT INTO \(schema).schema_migrations (version) VALUES (1), (2), (3), (4)",
                """
                INSERT INTO \(schema).accounts (seller_id, refresh_token, access_token, expire_time, status,
                    created_at, updated_at)
                VALUES ('1001', 'RT-old', 'AT-old', \(Moments.farFuture.millisecondsSince1970), 'active', 1, 1)
                """,
                """
                INSERT INTO \(schema).events (at, seller_id, kind)
                VALUES (1, '1001', 'imported'), (2, NULL, 'degraded')
                """,
                "CREATE VIEW \(schema).mine AS SELECT seller_id, access_token FROM \(schema).valid_tokens",
            ]
        try postgres.server.psql(script.joined(separator: ";\n"), database: postgres.name, user: postgres.role)
        // The reader role as `postgres init` of the previous release left it:
        // granted the two views of then.
        try postgres.server.psql(
            """
            DO $$ BEGIN CREATE ROLE \(PostgresSchema.readerRole) NOLOGIN;
            EXCEPTION WHEN duplicate_object THEN NULL; END $$;
            GRANT USAGE ON SCHEMA \(schema) TO \(PostgresSchema.readerRole);
            GRANT SELECT ON \(schema).tokens, \(schema).valid_tokens TO \(PostgresSchema.readerRole);
            """, database: postgres.name)

        let store = try await open(schema: schema)
        defer { store.close() }
        #expect(try await store.schemaVersion() == PostgresSchema.latestVersion)
        let account = try #require(try await store.account("1001"))
        #expect(account.app == .default)
        #expect(account.refreshToken == Secret("RT-old"))
        #expect(try await store.accountKeys(sellerID: "1001") == ["1001"])
        // The readers' queries answer as before; the new columns and view too.
        #expect(try postgres.psql("SELECT seller_id || ' ' || access_token FROM \(schema).mine") == "1001 AT-old")
        #expect(
            try postgres.psql("SELECT app || ' ' || access_token FROM \(schema).valid_tokens WHERE seller_id = '1001'")
                == "default AT-old")
        #expect(
            try postgres.psql(
                "SELECT app || ' ' || coalesce(country, '-') FROM \(schema).seller_tokens WHERE seller_id = '1001'")
                == "default -")
        // The reader reads the new view with no step of the operator's.
        #expect(
            try postgres.server.psql(
                "SET ROLE \(PostgresSchema.readerRole); SELECT count(*) FROM \(schema).seller_tokens",
                database: postgres.name) == "1")
        // The seller's events belong to its app; the daemon's own to none.
        let events = try await store.events(EventQuery())
        #expect(events.map(\.kind) == ["degraded", "imported"])
        #expect(events.map(\.app) == [nil, .default])
        // A name that cannot be an app's is refused by the schema itself.
        #expect(throws: PostgresServerError.self) {
            try postgres.psql("UPDATE \(schema).accounts SET app = 'Not:an_app'")
        }
    }

    @Test func sellerTokensFindsALazadaAccountByEachOfItsSellersAndKeepsAppsApart() async throws {
        let schema = SharedPostgres.uniqueName("t_")
        let store = try await open(schema: schema)
        defer { store.close() }
        let lazada: AppName = "lazada_sg"
        let ventures = [
            VentureSeller(country: "sg", sellerID: "100015339", userID: "100027341", shortCode: "SG10XF3"),
            VentureSeller(country: "th", sellerID: "200015339", shortCode: "TH10XF3"),
            VentureSeller(country: "my", sellerID: "300015339", shortCode: "MY10XF3"),
        ]
        let enrolled = try await store.enroll(
            app: lazada,
            grant: makeGrant(
                seller: "100015339", receivedAt: Moments.now,
                profile: SellerProfile(country: "cb", ventures: ventures)),
            nextRefreshAt: Moments.now + .seconds(600), now: Moments.now)
        let key = AccountKey(app: lazada, sellerID: "100015339")
        #expect(enrolled.key == key)
        #expect(enrolled.profile.country == "cb")
        // The same seller id under the default app is another account, with its own tokens.
        let own = makeToken("AT")
        _ = try await store.importAccounts(
            [
                ImportRecord(
                    sellerID: "100015339", refreshToken: makeToken("RT"), accessToken: own,
                    expireTime: Moments.farFuture)
            ], now: Moments.now)
        #expect(try await store.accountKeys(sellerID: "100015339") == ["100015339", key])

        func tokens(of seller: String) throws -> String {
            try postgres.psql(
                """
                SELECT string_agg(app || ' ' || coalesce(country, '-') || ' ' || coalesce(short_code, '-') || ' '
                    || access_token, ',' ORDER BY app)
                FROM \(schema).seller_tokens WHERE seller_id = '\(seller)'
                """)
        }
        let first = try #require(enrolled.accessToken).exposedValue
        #expect(try tokens(of: "100015339") == "default - - \(own.exposedValue),lazada_sg sg SG10XF3 \(first)")
        #expect(try tokens(of: "200015339") == "lazada_sg th TH10XF3 \(first)")
        #expect(try tokens(of: "300015339") == "lazada_sg my MY10XF3 \(first)")
        // By the seller indexes of both tables, not by reading them whole.
        let plan = try postgres.psql(
            """
            SET enable_seqscan = off;
            EXPLAIN SELECT access_token FROM \(schema).seller_tokens WHERE seller_id = '200015339'
            """)
        #expect(plan.contains("accounts_by_seller") && plan.contains("ventures_by_seller"), "\(plan)")

        // An answer that lists no sellers keeps them; one that lists fewer replaces them.
        let unlisted = makeGrant(seller: "100015339", receivedAt: Moments.now + .seconds(1))
        #expect(
            try await store.commitRotation(
                account: key, sent: enrolled.refreshToken, grant: unlisted, nextRefreshAt: Moments.now + .seconds(600),
                now: Moments.now + .seconds(1)))
        let second = try #require(unlisted.accessToken).exposedValue
        #expect(try tokens(of: "300015339") == "lazada_sg my MY10XF3 \(second)")
        let fewer = makeGrant(
            seller: "100015339", receivedAt: Moments.now + .seconds(2),
            profile: SellerProfile(ventures: Array(ventures.prefix(2))))
        #expect(
            try await store.commitRotation(
                account: key, sent: try #require(unlisted.refreshToken), grant: fewer,
                nextRefreshAt: Moments.now + .seconds(600), now: Moments.now + .seconds(2)))
        let third = try #require(fewer.accessToken).exposedValue
        #expect(try tokens(of: "300015339") == "")
        #expect(try tokens(of: "200015339") == "lazada_sg th TH10XF3 \(third)")
        #expect(try await store.account(key)?.profile.country == "cb")

        // Removed, the account's sellers go with it; the other app's seller stays.
        try await store.remove(account: key, now: Moments.now + .seconds(3))
        #expect(try tokens(of: "200015339") == "")
        #expect(try tokens(of: "100015339") == "default - - \(own.exposedValue)")
        #expect(try postgres.psql("SELECT count(*) FROM \(schema).ventures") == "0")
    }

    @Test func anAnnouncementNamesAnAppAndASellerAndNothingElseIsTaken() {
        #expect(ChangeFeed.account(announcedAs: "default:1001") == "1001")
        #expect(ChangeFeed.account(announcedAs: "lazada_sg:a:b") == AccountKey(app: "lazada_sg", sellerID: "a:b"))
        let implausible = [
            "1001", ":1001", "default:", "Default:1001", "default:bad id", "default:bad\nid",
            String(repeating: "a", count: 33) + ":1001",
        ]
        for payload in implausible {
            #expect(ChangeFeed.account(announcedAs: payload) == nil, "\(payload)")
        }
        var feed = ChangeFeed()
        feed.announce("lazada_sg:7", maxPending: 10)
        feed.announce("7", maxPending: 10)
        #expect(feed.pending == [AccountKey(app: "lazada_sg", sellerID: "7")])
        #expect(feed.everything == false)
    }

    // MARK: - Copy (migrate --to postgres)

    @Test func copiedAccountsReadBackInBytewiseOrderWithTheirRefreshTokens() async throws {
        let store = try await open(schema: SharedPostgres.uniqueName("t_"))
        defer { store.close() }
        // Case, punctuation and non-ASCII ids, which the database's ICU
        // collation orders differently from bytes.
        #expect(try postgres.psql("SELECT 'B' < 'a', 'é' < 'z'") == "f|t", "the database orders bytewise")
        let prefixes = ["a", "B", "c", "D", "_", "9", "é", "Ä", "z-", "Z_"]
        let accounts = (0..<2_500).map { index in
            Account(
                sellerID: prefixes[index % prefixes.count] + String(index), refreshToken: makeToken("RT"),
                updatedAt: Moments.now)
        }
        try await store.copyAccounts(accounts, now: Moments.now)
        #expect(try await store.accountCount() == accounts.count)

        var read: [(AccountKey, Secret)] = []
        var pageSizes: [Int] = []
        while true {
            let page = try await store.refreshTokens(after: read.last?.0, limit: 1_000)
            pageSizes.append(page.count)
            if page.isEmpty { break }
            read += page
        }
        #expect(pageSizes == [1_000, 1_000, 500, 0])
        let expected = accounts.sorted { $0.sellerID.utf8.lexicographicallyPrecedes($1.sellerID.utf8) }
        #expect(read.map(\.0) == expected.map(\.key))
        let differing = zip(read, expected).filter { $0.0.1 != $0.1.refreshToken }.map(\.1.sellerID)
        #expect(differing.isEmpty)
    }

    @Test func aCopiedAccountKeepsEverythingButItsLease() async throws {
        let store = try await open(schema: SharedPostgres.uniqueName("t_"))
        defer { store.close() }
        let original = Account(
            app: "lazada_sg", sellerID: "8001",
            profile: SellerProfile(
                userID: "u-8001", userNick: "shop", account: "shop@example.com", accountPlatform: "seller_center",
                sp: "ae", locale: "en_US", country: "sg"),
            refreshToken: makeToken("RT"), accessToken: makeToken("AT"), expireTime: Moments.farFuture,
            accessTokenLifetime: .seconds(86_400), refreshTokenValidTime: Moments.farFuture + .seconds(86_400),
            isRefreshable: false, status: .disabled, statusReason: StatusReason.disabledByOperator,
            nextRefreshAt: Moments.now + .seconds(60), failedAttempts: 3, lastError: "Timeout: no answer",
            lastRequestID: "req-8", refreshedAt: Moments.now - .seconds(3_600),
            lease: Lease(owner: "old-daemon", expiresAt: Moments.now + .seconds(30)), updatedAt: Moments.now,
            lastAnswerLost: true)
        try await store.copyAccounts([original], now: Moments.now)
        var expected = original
        expected.lease = nil
        #expect(try await store.account(AccountKey(app: "lazada_sg", sellerID: "8001")) == expected)

        // A copy over a seller already there stores nothing of the batch and
        // names no token.
        let batch = [Account(sellerID: "8002", refreshToken: makeToken("RT"), updatedAt: Moments.now), original]
        let error = await #expect(throws: PostgresStoreError.self) {
            try await store.copyAccounts(batch, now: Moments.now)
        }
        let described = error.map(String.init(describing:)) ?? ""
        let errorLeaks = batch.contains { described.contains($0.refreshToken.exposedValue) }
        #expect(errorLeaks == false)
        #expect(try await store.accountCount() == 1)
        #expect(try await store.account("8002") == nil)
    }
}

// MARK: - The suite's server

/// Starts one PostgreSQL server for the whole suite and stops it (by
/// releasing it) when the suite is done: a role that owns a database whose
/// default collation is ICU's English, as production databases' usually is,
/// so that an ORDER BY relying on it would not pass for bytewise.
struct SharedPostgres: SuiteTrait, TestScoping {
    final class Database: Sendable {
        let server: PostgresServer
        let role = "keeper"
        let password = "keeper's password"
        let name = "tokens"

        init(server: PostgresServer) throws {
            self.server = server
            try server.createRole(role, password: password)
            try server.psql(
                """
                CREATE DATABASE \(name) OWNER \(role) TEMPLATE template0
                    LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'
                """)
        }

        /// Opens the store in `schema` of `database` (the suite's by default) over TCP with the role's password.
        func open(schema: String, database: String?, logger: Logger) async throws -> PostgresAccountStore {
            let settings = try PostgresSettings(
                url: server.url(user: role, database: database ?? name), password: password, schema: schema,
                tls: .disable, maximumConnections: 4)
            return try await PostgresAccountStore.open(settings: settings, logger: logger)
        }

        /// Runs SQL as the superuser, in the suite's database by default.
        @discardableResult
        func psql(_ sql: String, database: String? = nil) throws -> String {
            try server.psql(sql, database: database ?? name)
        }
    }

    /// Held weakly: every task a test starts (a store's connection pool, a
    /// cluster task) copies the task-local values, and a strong reference
    /// there would keep the server alive past the suite until the process
    /// exits, without ever stopping it.
    final class Reference: Sendable {
        weak let database: Database?

        init(_ database: Database) {
            self.database = database
        }
    }

    @TaskLocal private static var reference: Reference?

    /// The suite's database, while the suite runs.
    static var current: Database? { reference?.database }

    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let database = try Database(server: await PostgresServer.started())
        // Released (the server stopped, its directory removed) on the way out.
        defer { withExtendedLifetime(database) {} }
        try await Self.$reference.withValue(Reference(database)) {
            try await function()
        }
    }

    /// A fresh lower-case identifier (a schema or database name).
    static func uniqueName(_ prefix: String) -> String {
        prefix + UUID().uuidString.lowercased().filter { $0 != "-" }.prefix(16)
    }
}

extension Trait where Self == SharedPostgres {
    /// One PostgreSQL server for the suite.
    static var sharedPostgres: Self { SharedPostgres() }
}

// MARK: - Helpers

/// Fixed moments, so that tests do not depend on the machine's clock. Access
/// tokens that must be valid expire far in the future, so that the
/// `valid_tokens` view (on the server's clock) sees them as valid.
private enum Moments {
    static let now = Timestamp(millisecondsSince1970: 1_800_000_000_000)
    static let farFuture = Timestamp(millisecondsSince1970: 4_102_444_800_000)  // 2100-01-01
    static let past = Timestamp(millisecondsSince1970: 1_000_000_000_000)
}

/// A unique token, so that a search for one cannot match another by accident.
private func makeToken(_ kind: String) -> Secret {
    Secret("\(kind)-\(UUID().uuidString)")
}

private func makeGrant(
    seller: String, refresh: Secret = makeToken("RT"), receivedAt: Timestamp, profile: SellerProfile = SellerProfile()
) -> TokenGrant {
    TokenGrant(
        sellerID: seller, profile: profile, accessToken: makeToken("AT"), refreshToken: refresh,
        accessTokenLifetime: .seconds(86_400), refreshTokenLifetime: .seconds(86_400 * 30),
        expireTime: receivedAt + .seconds(86_400), refreshTokenValidTime: receivedAt + .seconds(86_400 * 30),
        receivedAt: receivedAt, requestID: "req-1")
}

private func nonEmpty<T>(_ values: [T]) -> [T]? {
    values.isEmpty ? nil : values
}

/// Asks `probe` every 20 ms until it answers, for at most `timeout`; nil if it never did.
private func poll<T>(for timeout: Duration = .seconds(5), _ probe: () async throws -> T?) async throws -> T? {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while true {
        if let value = try await probe() { return value }
        if clock.now >= deadline { return nil }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// What `runCluster` reported through `onLiveNodes`, and whether it returned.
private final class LiveNodeReports: Sendable {
    private let state = Mutex((reports: [Int](), finished: false))

    var all: [Int] { state.withLock { $0.reports } }
    var last: Int? { all.last }
    var hasFinished: Bool { state.withLock { $0.finished } }

    func record(_ liveNodes: Int) {
        state.withLock { $0.reports.append(liveNodes) }
    }

    func finish() {
        state.withLock { $0.finished = true }
    }
}
