import Foundation
import IOPSimulator
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// Several daemons on one PostgreSQL database: the real binary, the
/// simulator over loopback HTTP, and a real PostgreSQL server of the test's
/// own (Debian's `postgresql`: initdb into a scratch directory, pg_ctl on a
/// loopback port).
@Suite("PostgreSQL end to end", .enabled(if: PostgresServer.isAvailable), .serialized)
struct PostgresEndToEndTests {
    /// A PostgreSQL server, a role and database for tokenkeeper, and a world
    /// whose configuration points at them (password from a 0600 file).
    struct Cluster {
        let server: PostgresServer
        let world: EndToEndWorld
        let database = "tokens"
        let schema = "tokenkeeper"

        init(settings: [String: String] = [:]) async throws {
            server = try await PostgresServer.started()
            let password = "keeper-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
            try server.createRole("keeper", password: password)
            try server.createDatabase(database, owner: "keeper")
            world = try await EndToEndWorld(
                settings: [
                    "storage.backend": "postgres",
                    "storage.postgres.url": server.url(user: "keeper", database: database),
                    "storage.postgres.tls": "disable",
                    "storage.postgres.heartbeat_seconds": "1",
                    "storage.postgres.takeover_seconds": "2",
                ].merging(settings) { $1 })
            let passwordFile = world.root.appendingPathComponent("postgres_password").path
            guard
                FileManager.default.createFile(
                    atPath: passwordFile, contents: Data(password.utf8), attributes: [.posixPermissions: 0o600])
            else { throw CocoaError(.fileWriteUnknown) }
            try world.writeConfig(["storage.postgres.password_file": passwordFile])
        }

        /// Rows of a query as the superuser, `|` between columns.
        func query(_ sql: String) throws -> [[String]] {
            try server.psql(sql, database: database).split(separator: "\n").map {
                $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            }
        }

        /// Seller → (status, refresh token, expire_time) as stored.
        func accounts() throws -> [String: (status: String, refreshToken: String, expireTime: Int64)] {
            var rows: [String: (String, String, Int64)] = [:]
            for row in try query(
                "SELECT seller_id, status, refresh_token, coalesce(expire_time, 0) FROM \(schema).accounts")
            where row.count == 4 {
                rows[row[0]] = (row[1], row[2], Int64(row[3]) ?? 0)
            }
            return rows
        }

        func tearDown() async {
            await world.tearDown()
            try? server.stop(mode: "immediate")
        }
    }

    /// Runs `body` with a new cluster and stops its PostgreSQL server after,
    /// whatever happens (a server left running outlives the test process).
    static func withCluster(
        settings: [String: String] = [:], _ body: (Cluster) async throws -> Void
    ) async throws {
        let cluster = try await Cluster(settings: settings)
        do {
            try await body(cluster)
        } catch {
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }

    /// Same pace as the SQLite test of 50 sellers: 20 s tokens due together
    /// need the call rate; tokens of real sellers live hours.
    static let settings = [
        "refresh.max_calls_per_second": "50", "refresh.concurrency": "8", "gateway.timeout_seconds": "5",
    ]

    @Test(
        "two daemons with hook, webhook and callback: a revocation told once in all, the link honoured by the other node's callback, a replay refused, and after kill -9 the survivor tells the next one once"
    )
    func operatorLoopAcrossTwoNodes() async throws {
        let receiver = WebhookReceiver(secret: "two-node-" + UUID().uuidString)
        try await receiver.start()
        defer { Task { await receiver.stop() } }
        let ports = [try freePort(), try freePort()]
        let callbackPath = "/aliexpress/callback"
        try await Self.withCluster(settings: Self.settings) { cluster in
            let world = cluster.world
            let hook = try Hook(in: world.root)
            let secretPath = world.root.appendingPathComponent("webhook_secret").path
            _ = FileManager.default.createFile(
                atPath: secretPath, contents: Data(receiver.secret.utf8), attributes: [.posixPermissions: 0o600])
            try world.writeConfig([
                "notify.command": "[\"\(hook.path)\"]", "notify.webhook_url": receiver.url,
                "notify.webhook_secret_file": secretPath, "notify.retry_initial_seconds": "0.5",
                "notify.retry_max_seconds": "2",
                "app.redirect_uri": "http://127.0.0.1:\(ports[0])\(callbackPath)",
            ])
            let (ids, jsonl) = try world.seedSellers(3, accessTokenLifetime: .seconds(30))
            #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
            let daemons = try ports.map {
                try world.startDaemon(environment: ["TOKENKEEPER_CALLBACK_LISTEN": "127.0.0.1:\($0)"])
            }
            for daemon in daemons {
                #expect(
                    await eventually { daemon.stderr.text.contains("callback listener ready") }, "\(daemon.stderr.text)"
                )
            }

            // A revocation: one reauth_required through the hook and one
            // through the webhook, in all (not one per node).
            try world.simulator.revoke(sellerID: ids[0])
            #expect(
                await eventually(timeout: .seconds(60)) {
                    receiver.deliveries.contains { $0.kind == "reauth_required" && $0.sellerID == ids[0] }
                        && hook.calls().contains { $0.kind == "reauth_required" && $0.sellerID == ids[0] }
                }, "\(daemons.map { $0.stderr.text.suffix(2000) })")
            try await Task.sleep(for: .seconds(4))
            let told = receiver.deliveries.filter { $0.kind == "reauth_required" && $0.sellerID == ids[0] }
            #expect(told.count == 1, "one webhook delivery in all")
            #expect(hook.calls().filter { $0.kind == "reauth_required" && $0.sellerID == ids[0] }.count == 1)
            let link = try #require(told.first?.object["authorize_url"] as? String)

            // The link, followed through the authorization page, lands on
            // node A's address; it is sent to node B's callback instead.
            world.simulator.updateBehavior { $0.loggedInSeller = ids[0] }
            let page = try await Browser.get(link)
            let landingOnA = try #require(page.location)
            let landingOnB = landingOnA.replacingOccurrences(of: ":\(ports[0])/", with: ":\(ports[1])/")
            #expect(landingOnB != landingOnA)
            let landing = try await Browser.get(landingOnB)
            #expect(landing.status == 200, "\(landing.body)")
            #expect(try cluster.accounts()[ids[0]]?.status == "active")
            #expect(
                await eventually(timeout: .seconds(30)) {
                    receiver.deliveries.contains { $0.kind == "reactivated" && $0.sellerID == ids[0] }
                        && hook.calls().contains { $0.kind == "reactivated" && $0.sellerID == ids[0] }
                })
            // A replay of the used link, on either node, is refused and spends no code.
            let exchanges = world.simulator.counters.codeExchanges
            for landing in [landingOnA, landingOnB] {
                let replay = try await Browser.get(landing)
                #expect(replay.status == 400 && replay.body.contains("already used"), "\(replay.body)")
            }
            #expect(world.simulator.counters.codeExchanges == exchanges, "a replay spends no code")
            try await Task.sleep(for: .seconds(3))
            #expect(receiver.deliveries.filter { $0.kind == "reactivated" }.count == 1, "one reactivated")
            #expect(hook.calls().filter { $0.kind == "reactivated" }.count == 1)

            // status and events read the same on PostgreSQL.
            let events = try await world.run(["events", "--seller", ids[0], "--kind", "reactivated", "--json"])
            #expect(events.exitCode == 0 && events.stdout.split(separator: "\n").count == 1, "\(events)")
            let status = try await world.run(["status", "--json"])
            let statusObject = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            #expect((statusObject?["accounts"] as? [String: Any])?["active"] as? Int == 3, "\(status)")
            #expect(status.stdout.contains("webhook"), "notification figures: \(status.stdout)")
            let link2 = try await world.run(["authorize-url", "--seller", ids[2]])
            #expect(link2.exitCode == 0 && link2.stdout.contains("state="), "\(link2)")

            // kill -9 of node B; the survivor tells the next revocation, once.
            daemons[1].signal(SIGKILL)
            _ = await daemons[1].wait(timeout: .seconds(10))
            try world.simulator.revoke(sellerID: ids[1])
            #expect(
                await eventually(timeout: .seconds(60)) {
                    receiver.deliveries.contains { $0.kind == "reauth_required" && $0.sellerID == ids[1] }
                        && hook.calls().contains { $0.kind == "reauth_required" && $0.sellerID == ids[1] }
                }, "\(daemons[0].stderr.text.suffix(3000))")
            try await Task.sleep(for: .seconds(4))
            #expect(receiver.deliveries.filter { $0.kind == "reauth_required" && $0.sellerID == ids[1] }.count == 1)
            #expect(hook.calls().filter { $0.kind == "reauth_required" && $0.sellerID == ids[1] }.count == 1)

            await world.stop(daemons[0])

            // backup is SQLite's: on PostgreSQL it says what to run instead,
            // and what it says works.
            let backup = try await world.run(["backup", world.root.appendingPathComponent("copy.db").path])
            #expect(backup.exitCode == 64, "\(backup)")
            let advice = backup.stderr
            let command = try #require(
                advice.range(of: "pg_dump ").flatMap { start in
                    advice.range(of: " (restore with", range: start.lowerBound..<advice.endIndex).map {
                        String(advice[start.lowerBound..<$0.lowerBound])
                    }
                }, "\(advice)")
            let dump = world.root.appendingPathComponent("tokenkeeper.dump").path
            let passwordFile = world.root.appendingPathComponent("postgres_password").path
            let shell = try InstallTests.shell(
                [
                    "/bin/sh", "-c",
                    "PGPASSWORD=\"$(cat '\(passwordFile)')\" "
                        + command.replacingOccurrences(
                            of: "pg_dump ", with: "\"$(ls /usr/lib/postgresql/*/bin/pg_dump | tail -1)\" "
                        )
                        .replacingOccurrences(
                            of: "--file=tokenkeeper-$(date +%Y%m%d-%H%M%S).dump", with: "--file='\(dump)'")
                        + " && \"$(ls /usr/lib/postgresql/*/bin/pg_restore | tail -1)\" --list '\(dump)'",
                ])
            #expect(shell.status == 0 && shell.text.contains("TABLE \(cluster.schema) accounts"), "\(shell.text)")
            let verdicts = try receiver.standardWebhooksVerdicts()
            #expect(!verdicts.isEmpty && verdicts.allSatisfy { $0 == nil }, "standardwebhooks: \(verdicts)")
            world.expectNoSecretsLeaked(
                in: receiver.deliveries.map(\.body) + hook.calls().map(\.body), extraSecrets: [receiver.secret])
        }
    }

    @Test("two daemons, 50 sellers with 20 s tokens for 90 s, one killed with SIGKILL at 45 s")
    func twoNodesShareTheWorkAndSurviveAKill() async throws {
        try await Self.withCluster(settings: Self.settings) { cluster in
            let world = cluster.world
            let (ids, jsonl) = try world.seedSellers(50, accessTokenLifetime: .seconds(20))
            // Answers take 400 ms, so that the kill can come while the node
            // has calls in flight (the gateway rotates on arrival).
            world.simulator.updateBehavior { $0.responseLatency = .milliseconds(400) }
            let imported = try await world.run(["import", "--file", "-"], stdin: jsonl)
            #expect(imported.exitCode == 0, "\(imported)")

            let first = try world.startDaemon()
            let second = try world.startDaemon()
            let start = ContinuousClock.now
            for daemon in [first, second] {
                #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")
            }
            // Each sees the other.
            for daemon in [first, second] {
                #expect(await eventually(timeout: .seconds(10)) { daemon.stderr.text.contains("live_nodes=2") })
            }
            try await Task.sleep(until: start + .seconds(45))

            // The killed node's calls in flight: its leases, and what the gateway
            // is answering at that moment (taken on both sides of the kill).
            let killedNode = try #require(
                try cluster.query("SELECT node FROM \(cluster.schema).nodes WHERE pid = \(first.pid)").first?.first)
            func killedNodeInFlight() throws -> Set<String> {
                let leased = try cluster.query(
                    "SELECT seller_id FROM \(cluster.schema).accounts WHERE lease_owner = '\(killedNode)'"
                ).compactMap(\.first)
                return Set(leased).union(ids.filter { world.simulator.inFlightRefreshes(for: $0) > 0 })
            }
            // At 45 s, as soon as the node to be killed holds a lease (a call
            // in flight), within 10 s.
            let leaseDeadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < leaseDeadline,
                try cluster.query(
                    "SELECT count(*) FROM \(cluster.schema).accounts WHERE lease_owner = '\(killedNode)'"
                ).first?.first == "0"
            {
                // psql is a process each time: gently, beside the other suites.
                try await Task.sleep(for: .milliseconds(50))
            }
            let countersBeforeKill = world.simulator.counters
            var inFlightAtKill = try killedNodeInFlight()
            first.signal(SIGKILL)
            inFlightAtKill.formUnion(try killedNodeInFlight())
            _ = await first.wait(timeout: .seconds(10))
            let killedAt = ContinuousClock.now
            let rotationsAtKill = Dictionary(
                uniqueKeysWithValues: ids.map { ($0, world.simulator.sellerStats(for: $0)?.rotations ?? 0) })
            let work = try cluster.query(
                "SELECT node, count(*) FROM \(cluster.schema).events WHERE kind = 'refreshed' GROUP BY node")
            // The survivor notices the other is gone.
            #expect(await eventually(timeout: .seconds(10)) { second.stderr.text.contains("live_nodes=1") })

            // 45 s after the kill, however long the wait for a lease took
            // (psql is slow to start beside the other suites).
            try await Task.sleep(until: killedAt + .seconds(45))
            let result = await world.stop(second, timeout: .seconds(20))
            world.record(first.stderr.text)
            let counters = world.simulator.counters

            // Before the kill: no refresh token sent twice, never two refreshes
            // of one seller at once, and both nodes did a share of the work.
            #expect(countersBeforeKill.refreshTokenReuses == 0)
            #expect(countersBeforeKill.overlappingRefreshes == 0)
            #expect(counters.overlappingRefreshes == 0)
            let shares = Dictionary(
                uniqueKeysWithValues: work.compactMap { row in
                    row.count == 2 ? (row[0], Int(row[1]) ?? 0) : nil
                })
            let total = shares.values.reduce(0, +)
            #expect(shares.count == 2, "refreshes by node: \(shares)")
            for (node, count) in shares {
                #expect(count >= total / 5, "node \(node) did \(count) of \(total) refreshes")
            }
            #expect(total >= 100, "\(total) refreshes in the first 45 s")

            // After the kill: the survivor kept every seller valid but those the
            // killed node had in flight; only those may have been lost.
            let stored = try cluster.accounts()
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            var lost: [String] = []
            for sellerID in ids {
                let row = stored[sellerID]
                let current = world.simulator.currentRefreshToken(for: sellerID)?.exposedValue
                let fine = row?.status == "active" && row?.refreshToken == current && (row?.expireTime ?? 0) > now
                if !fine { lost.append(sellerID) }
                if !inFlightAtKill.contains(sellerID) {
                    #expect(fine, "seller \(sellerID) not kept valid after the kill (status \(row?.status ?? "none"))")
                    let after =
                        (world.simulator.sellerStats(for: sellerID)?.rotations ?? 0)
                        - rotationsAtKill[sellerID, default: 0]
                    #expect(after >= 2, "seller \(sellerID) rotated \(after) times in the 45 s after the kill")
                    #expect(world.simulator.sellerStats(for: sellerID)?.refreshTokenReuses == 0)
                }
            }
            #expect(
                Set(lost).isSubset(of: inFlightAtKill), "lost \(lost), in flight at the kill \(inFlightAtKill.sorted())"
            )
            print(
                "two nodes: refreshes by node before the kill \(shares.values.sorted()); in flight at the kill "
                    + "\(inFlightAtKill.count); lost \(lost.count); reuses \(counters.refreshTokenReuses); "
                    + "overlaps \(counters.overlappingRefreshes); rotations \(counters.rotations)")
            // At most the killed node's concurrency (the set above also holds
            // the survivor's calls that the gateway was answering).
            #expect(lost.count <= 8, "\(lost.count) sellers lost")
            #expect(counters.refreshTokenReuses <= inFlightAtKill.count)
            #expect(result.exitCode == 0)
            world.expectNoSecretsLeaked()
        }
    }

    @Test("tokenkeeper_reader reads valid_tokens and no refresh token anywhere")
    func readerRoleReadsValidTokensOnly() async throws {
        try await Self.withCluster { cluster in
            let world = cluster.world
            let (ids, jsonl) = try world.seedSellers(5, accessTokenLifetime: .seconds(600))
            #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
            // The commands, on PostgreSQL.
            let status = try await world.run(["status"])
            #expect(status.exitCode == 0, "\(status)")
            #expect(status.stdout.contains("storage PostgreSQL"), "\(status.stdout)")
            #expect(status.stdout.contains("schema tokenkeeper"), "\(status.stdout)")
            #expect(status.stdout.contains("accounts: 5 active, 0 reauth_required, 0 disabled"), "\(status.stdout)")
            let listed = try await world.run(["list", "--json"])
            #expect(listed.exitCode == 0)
            let listing = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]
            #expect(listing?.compactMap { $0["seller_id"] as? String } == ids)
            // Its output is the token: not kept with what the leak check reads.
            let token = try await TokenKeeperProcess.run(["token", ids[2], "--config", world.configPath])
            #expect(token.exitCode == 0, "\(token)")
            #expect(
                Secret(token.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
                    == world.simulator.issuedTokens(for: ids[2]).last?.accessToken)
            #expect(try await world.run(["disable", ids[4]]).exitCode == 0)
            #expect(try cluster.accounts()[ids[4]]?.status == "disabled")
            #expect(try await world.run(["enable", ids[4]]).exitCode == 0)
            // A refresh from the command line, and a seller added from its code.
            let refreshed = try await world.run(["refresh", ids[1]])
            #expect(refreshed.exitCode == 0, "\(refreshed)")
            #expect(world.simulator.sellerStats(for: ids[1])?.rotations == 1)
            expectSameToken(
                try cluster.accounts()[ids[1]]?.refreshToken,
                world.simulator.currentRefreshToken(for: ids[1])?.exposedValue, "stored refresh token")
            world.simulator.addSeller(sellerID: "4100", nick: "added", accessTokenLifetime: .seconds(600))
            let added = try await world.run(["add", "--code", try world.simulator.issueAuthorizationCode(for: "4100")])
            #expect(added.exitCode == 0, "\(added)")
            #expect(try cluster.accounts()["4100"]?.status == "active")
            #expect(try await world.run(["remove", "4100"]).exitCode == 0)
            #expect(try cluster.accounts()["4100"] == nil)
            let events = try await world.run(["events", "--seller", ids[1], "--json"])
            #expect(events.exitCode == 0, "\(events)")
            let kinds = events.stdout.split(separator: "\n").compactMap {
                (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["kind"] as? String
            }
            #expect(kinds == ["imported", "refreshed"], "\(events.stdout)")
            // backup on PostgreSQL: in the two-node test (it runs what backup prints).
            let passwordFile = world.root.appendingPathComponent("reader_password").path
            let readerPassword = "reader-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
            #expect(
                FileManager.default.createFile(
                    atPath: passwordFile, contents: Data(readerPassword.utf8), attributes: [.posixPermissions: 0o600]))
            let initialized = try await world.run(["postgres", "init", "--reader-password-file", passwordFile])
            #expect(initialized.exitCode == 1, "the daemon's role may not create roles: \(initialized)")
            #expect(initialized.stderr.contains("--print-sql"))
            // As the DBA would: the SQL printed, run by the superuser with the password.
            let printed = try await world.run(["postgres", "init", "--print-sql"])
            #expect(printed.exitCode == 0)
            #expect(!printed.stdout.contains("refresh_token"))
            let sql = printed.stdout.replacingOccurrences(of: "'…'", with: "'\(readerPassword)'")
            try cluster.server.psql(sql, database: cluster.database)
            // Or tokenkeeper itself, when its role may create roles.
            try cluster.server.psql("ALTER ROLE keeper CREATEROLE")
            let again = try await world.run(["postgres", "init", "--reader-password-file", passwordFile])
            #expect(again.exitCode == 0, "\(again)")

            let reader = { (sql: String) throws -> String in
                try cluster.server.psqlTCP(
                    sql, database: cluster.database, user: "tokenkeeper_reader", password: readerPassword)
            }
            let valid = try reader(
                "SELECT seller_id, access_token, expire_time FROM tokenkeeper.valid_tokens ORDER BY 1")
            #expect(valid.split(separator: "\n").map { String($0.split(separator: "|")[0]) } == ids)
            let tokens = try reader("SELECT count(*) FROM tokenkeeper.tokens WHERE status = 'active'")
            #expect(tokens == "5")

            // Every table and view of the schema: refresh_token is refused.
            let relations = try cluster.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tokenkeeper'"
            ).compactMap(\.first)
            #expect(relations.contains("accounts") && relations.contains("valid_tokens"))
            for relation in relations {
                #expect(throws: PostgresServerError.self, "refresh_token readable in \(relation)") {
                    try reader("SELECT refresh_token FROM tokenkeeper.\(relation) LIMIT 1")
                }
            }
            // Nor any other column of a table (rows of accounts, events, nodes…).
            for relation in relations where !["tokens", "valid_tokens", "seller_tokens"].contains(relation) {
                #expect(throws: PostgresServerError.self, "\(relation) readable") {
                    try reader("SELECT count(*) FROM tokenkeeper.\(relation)")
                }
            }
            // No column of the readers' views holds a refresh token.
            let stored = try cluster.accounts()
            let visible = try reader("SELECT * FROM tokenkeeper.tokens")
            for sellerID in ids {
                let refreshToken = try #require(stored[sellerID]?.refreshToken)
                #expect(!visible.contains(refreshToken), "a refresh token is visible to the reader")
            }
            world.expectNoSecretsLeaked()
        }
    }

    @Test("PostgreSQL restarted under two running daemons: ridden out, no seller marked, nothing lost")
    func postgresRestartIsRiddenOut() async throws {
        let settings = Self.settings.merging(["storage.postgres.statement_timeout_seconds": "2"]) { $1 }
        try await Self.withCluster(settings: settings) { cluster in
            let world = cluster.world
            // Refreshed 8 s before expiry: more than the outage.
            let (ids, jsonl) = try world.seedSellers(20, accessTokenLifetime: .seconds(40))
            #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
            // The first node serves /metrics too.
            let metricsPort = try freePort()
            let daemons = [
                try world.startDaemon(environment: ["TOKENKEEPER_METRICS_LISTEN": "127.0.0.1:\(metricsPort)"]),
                try world.startDaemon(),
            ]
            for daemon in daemons {
                #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")
            }
            let base = "http://127.0.0.1:\(metricsPort)"
            #expect(await eventually { (try? await Browser.get(base + "/readyz"))?.status == 200 })
            #expect(
                await eventually {
                    let text = (try? await Browser.get(base + "/metrics"))?.body ?? ""
                    return (try? PrometheusText.parse(text))?.value("tokenkeeper_live_nodes", [:]) == 2
                })
            let exposition = try await Browser.get(base + "/metrics").body
            let parsed = try PrometheusText.parse(exposition)
            #expect(try await PromTool.checkMetrics(exposition) == "", "promtool check metrics, on PostgreSQL")
            #expect(parsed.value("tokenkeeper_accounts", ["app": "default", "status": "active"]) == 20)
            #expect(parsed.value("tokenkeeper_accounts", ["app": "default", "status": "reauth_required"]) == 0)
            #expect(parsed.value("tokenkeeper_ready", [:]) == 1)
            #expect((parsed.value("tokenkeeper_earliest_access_expiry_seconds", [:]) ?? -1) > 0)
            // Sellers fall due from about 30 s on: the outage is among them.
            try await Task.sleep(for: .seconds(26))
            let rotationsBefore = ids.map { world.simulator.sellerStats(for: $0)?.rotations ?? 0 }
            // Down for 6 s (three statement timeouts), then up again on the same port.
            try cluster.server.stop(mode: "fast")
            try await Task.sleep(for: .seconds(6))
            try cluster.server.start()
            let restartedAt = ContinuousClock.now
            // Both daemons carry on: every seller rotates again.
            #expect(
                await eventually(timeout: .seconds(45), every: .milliseconds(500)) {
                    zip(ids, rotationsBefore).allSatisfy { sellerID, before in
                        (world.simulator.sellerStats(for: sellerID)?.rotations ?? 0) >= before + 1
                    }
                })
            #expect(ContinuousClock.now - restartedAt < .seconds(45))
            // No access token expired: the outage was shorter than the margin.
            #expect(world.simulator.counters.refreshesAfterAccessExpiry == 0)
            // The sellers may all rotate again before a node's next heartbeat
            // says it works again: waited for, not raced.
            for daemon in daemons {
                #expect(
                    await eventually(timeout: .seconds(30)) {
                        daemon.stderr.text.contains("PostgreSQL heartbeat works again")
                    }, "\(daemon.stderr.text.suffix(2000))")
            }
            var results: [CommandResult] = []
            for daemon in daemons {
                #expect(daemon.isRunning, "a daemon exited on the restart: \(daemon.stderr.text.suffix(2000))")
                results.append(await world.stop(daemon))
            }
            // Each noticed, said so, and said when it was over.
            for result in results {
                let log = result.stderr
                #expect(log.contains("PostgreSQL heartbeat failed"), "\(log.suffix(3000))")
                #expect(log.contains("PostgreSQL heartbeat works again"), "\(log.suffix(3000))")
                #expect(log.contains("listening for changes again"), "\(log.suffix(3000))")
                if log.contains("the store failed") { #expect(log.contains("the store works again")) }
            }
            let stored = try cluster.accounts()
            let counters = world.simulator.counters
            #expect(counters.refreshTokenReuses == 0)
            #expect(counters.overlappingRefreshes == 0)
            for sellerID in ids {
                #expect(
                    stored[sellerID]?.status == "active",
                    "seller \(sellerID) marked \(stored[sellerID]?.status ?? "gone")")
                expectSameToken(
                    stored[sellerID]?.refreshToken, world.simulator.currentRefreshToken(for: sellerID)?.exposedValue,
                    "stored refresh token")
            }
            world.expectNoSecretsLeaked()
        }
    }

    /// 2,000 sellers in the suite; 100,000 when run alone by hand as a
    /// benchmark (TOKENKEEPER_MIGRATE_SELLERS; docs/PERFORMANCE.md).
    @Test("migrate --to postgres of many sellers, then a daemon on PostgreSQL refreshes them")
    func migrateAHundredThousandThenRefresh() async throws {
        // In the suite, small and rate-limited: it runs beside the timing-
        // sensitive end-to-end tests; alone, by hand, 100,000 at full speed.
        let environment = ProcessInfo.processInfo.environment["TOKENKEEPER_MIGRATE_SELLERS"]
        let count = Int(environment ?? "") ?? 2_000
        let settings = [
            "refresh.max_calls_per_second": environment == nil ? "200" : "0", "refresh.concurrency": "32",
        ]
        try await Self.withCluster(settings: settings) { cluster in
            let world = cluster.world
            // Seeded on SQLite first: the store being migrated. Their access
            // tokens fall due after the copy (about 45 s, or 90 s for more
            // than 20,000).
            try world.writeConfig(["storage.backend": "sqlite"])
            let (ids, jsonl) = try world.seedSellers(count, accessTokenLifetime: .seconds(count > 20_000 ? 120 : 60))
            let imported = try await world.run(["import", "--file", "-"], stdin: jsonl)
            #expect(imported.exitCode == 0, "\(imported.stderr.suffix(2000))")

            // Refused while a daemon holds keeper.db.
            let sqliteDaemon = try world.startDaemon()
            #expect(await eventually { sqliteDaemon.stderr.text.contains("schedule loaded") })
            let refused = try await world.run(["migrate", "--to", "postgres"])
            #expect(refused.exitCode == 1)
            #expect(refused.stderr.contains("stop the daemon first"), "\(refused)")
            await world.stop(sqliteDaemon, timeout: .seconds(60))
            let before = try KeeperRow.all(in: world.storage)
            #expect(world.simulator.counters.rotations == 0)

            let migrated = try await world.run(["migrate", "--to", "postgres"])
            #expect(migrated.exitCode == 0, "\(migrated)")
            #expect(migrated.stdout.contains("verified: \(count) sellers"), "\(migrated.stdout)")
            // Again: refused, keeper.db was copied already.
            let again = try await world.run(["migrate", "--to", "postgres"])
            #expect(again.exitCode == 1)
            #expect(again.stderr.contains("already copied to PostgreSQL"), "\(again)")
            // Into a schema that holds sellers (the mark removed by hand): refused, nothing written.
            let marker = world.storage + "/migrated-to-postgres"
            let mark = try String(contentsOfFile: marker, encoding: .utf8)
            try FileManager.default.removeItem(atPath: marker)
            let intoFull = try await world.run(["migrate", "--to", "postgres"])
            #expect(intoFull.exitCode == 1)
            #expect(intoFull.stderr.contains("already holds \(count) sellers"), "\(intoFull)")
            try mark.write(toFile: marker, atomically: true, encoding: .utf8)
            let copied = try cluster.accounts()
            #expect(copied.count == count)
            #expect(ids.allSatisfy { copied[$0]?.refreshToken == before[$0]?.refreshToken })

            // keeper.db is not used again by mistake: its tokens go stale now.
            let stale = try await world.run(["list"])
            #expect(stale.exitCode == 78, "\(stale)")
            #expect(stale.stderr.contains("was copied to PostgreSQL"), "\(stale)")

            // The daemon on PostgreSQL refreshes every one of them.
            try world.writeConfig(["storage.backend": "postgres"])
            let daemon = try world.startDaemon()
            #expect(
                await eventually(timeout: .seconds(600), every: .seconds(1)) {
                    ids.allSatisfy { (world.simulator.sellerStats(for: $0)?.rotations ?? 0) >= 1 }
                })
            let result = await world.stop(daemon, timeout: .seconds(60))
            #expect(result.exitCode == 0)
            let counters = world.simulator.counters
            #expect(counters.rotations >= count)
            #expect(counters.refreshTokenReuses == 0)
            #expect(counters.overlappingRefreshes == 0)
            let stored = try cluster.accounts()
            let mismatched = ids.filter {
                stored[$0]?.refreshToken != world.simulator.currentRefreshToken(for: $0)?.exposedValue
            }
            #expect(
                mismatched.isEmpty, "\(mismatched.count) sellers' stored refresh token is not the gateway's current one"
            )
            #expect(stored.values.allSatisfy { $0.status == "active" })
        }
    }
}
