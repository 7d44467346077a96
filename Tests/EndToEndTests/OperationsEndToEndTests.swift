import Foundation
import IOPSimulator
import Testing
import TokenKeeperCore

/// The issue-7 scenes with the real binary, IOPSimulator and real HTTP: a
/// revoked seller told through the hook and a signed webhook, the loop closed
/// through the authorization page and the callback listener, a receiver that
/// is down for a while, the warning window, metrics read by a real
/// Prometheus parser, and a backup under load.
@Suite("Operations end to end")
struct OperationsEndToEndTests {
    /// A world with the hook, the webhook and the callback listener configured.
    static func world(
        receiver: WebhookReceiver, callbackPort: Int, extra: [String: String] = [:]
    ) async throws -> (EndToEndWorld, Hook) {
        let world = try await EndToEndWorld()
        let hook = try Hook(in: world.root)
        let webhookSecretPath = world.root.appendingPathComponent("webhook_secret").path
        _ = FileManager.default.createFile(
            atPath: webhookSecretPath, contents: Data(receiver.secret.utf8), attributes: [.posixPermissions: 0o600])
        var settings: [String: String] = [
            "notify.command": "[\"\(hook.path)\"]", "notify.webhook_url": receiver.url,
            "notify.webhook_secret_file": webhookSecretPath, "notify.retry_initial_seconds": "0.5",
            "notify.retry_max_seconds": "2", "callback.listen": "127.0.0.1:\(callbackPort)",
            "app.redirect_uri": "http://127.0.0.1:\(callbackPort)/aliexpress/callback",
        ]
        settings.merge(extra) { _, new in new }
        try world.writeConfig(settings)
        return (world, hook)
    }

    @Test(
        "a revoked seller: one reauth_required through hook and webhook; its link's click makes it active; forged, expired and replayed states change nothing"
    )
    func revokedSellerLoopIsClosedThroughTheCallback() async throws {
        // A Standard Webhooks key (whsec_ and base64), and a receiver that
        // refuses the first delivery.
        var random = SystemRandomNumberGenerator()
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &random) })
        let receiver = WebhookReceiver(secret: "whsec_" + key.base64EncodedString(), refusing: 1)
        try await receiver.start()
        defer { Task { await receiver.stop() } }
        let callbackPort = try freePort()
        // Retried 1.1 s or more later: in another second, so with another timestamp.
        let (world, hook) = try await Self.world(
            receiver: receiver, callbackPort: callbackPort,
            extra: ["notify.retry_initial_seconds": "2.2", "notify.retry_max_seconds": "4"])
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(3, accessTokenLifetime: .seconds(8))
        let revoked = ids[0]
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(
            await eventually { (world.simulator.sellerStats(for: revoked)?.rotations ?? 0) >= 1 },
            "\(daemon.stderr.text.suffix(2000))")
        try world.simulator.revoke(sellerID: revoked)

        // Told once, through both channels.
        #expect(
            await eventually(timeout: .seconds(40)) {
                receiver.deliveries.contains { $0.kind == "reauth_required" && $0.sellerID == revoked }
                    && hook.calls().contains { $0.kind == "reauth_required" && $0.sellerID == revoked }
            }, "\(daemon.stderr.text.suffix(3000))")
        try await Task.sleep(for: .seconds(3))
        let told = receiver.deliveries.filter { $0.kind == "reauth_required" }
        #expect(Set(told.compactMap(\.id)).count == 1, "one reauth_required event")
        // The refused delivery came again: the same webhook-id and body, a new timestamp.
        let first = receiver.deliveries[0]
        let retries = receiver.deliveries.dropFirst().filter { $0.headers["webhook-id"] == first.headers["webhook-id"] }
        #expect(first.headers["webhook-id"] != nil && retries.count == 1, "\(receiver.deliveries.map(\.headers))")
        #expect(retries.first?.body == first.body)
        #expect(
            retries.first?.headers["webhook-timestamp"] != first.headers["webhook-timestamp"],
            "a new timestamp on every attempt")
        #expect(first.headers["webhook-id"] == first.id, "webhook-id is the event's id")
        #expect(hook.calls().filter { $0.kind == "reauth_required" }.count == 1)
        let event = try #require(told.first?.object)
        #expect(event["seller_id"] as? String == revoked)
        #expect(event["reason"] as? String == "IllegalRefreshToken")
        #expect(event["at"] is NSNumber && event["event_id"] is NSNumber && event["id"] is String)
        #expect(
            Set(event.keys) == [
                "id", "event_id", "kind", "app", "seller_id", "reason", "reauth_by", "at", "request_id",
                "authorize_url",
            ])
        #expect(event["app"] as? String == "default")
        let hookCall = try #require(hook.calls().first { $0.kind == "reauth_required" })
        #expect(hookCall.body == told[0].body, "the hook and the webhook get the same JSON")
        #expect(hookCall.id == told[0].id, "TOKENKEEPER_EVENT_ID is the JSON's id")
        let link = try #require(event["authorize_url"] as? String)
        #expect(
            link.hasPrefix(world.simulator.baseURL!.replacingOccurrences(of: "/rest", with: "") + "/oauth/authorize?"))

        // Refusals first, while the seller still needs re-authorization: each
        // changes nothing (no code spent, no row or event written).
        let snapshot = try Self.storeSnapshot(world, seller: revoked)
        let exchanges = world.simulator.counters.codeExchanges
        world.simulator.updateBehavior { $0.loggedInSeller = revoked }
        let newLink = try await world.run(["authorize-url", "--seller", revoked])
        #expect(newLink.exitCode == 0, "\(newLink)")
        let forgedRedirect = try #require(
            try await Browser.get(newLink.stdout.trimmingCharacters(in: .whitespacesAndNewlines)).location)
        let forged = try await Browser.get(Self.tamperingState(in: forgedRedirect))
        #expect(forged.status == 400 && forged.body.contains("not one tokenkeeper signed"), "\(forged.body)")

        let oldLink = try await world.run(
            ["authorize-url", "--seller", revoked], environment: ["TOKENKEEPER_TEST_CLOCK_OFFSET_SECONDS": "-300000"])
        let expiredRedirect = try #require(
            try await Browser.get(oldLink.stdout.trimmingCharacters(in: .whitespacesAndNewlines)).location)
        let expired = try await Browser.get(expiredRedirect)
        #expect(expired.status == 400 && expired.body.contains("expired"), "\(expired.body)")

        let missing = try await Browser.get("http://127.0.0.1:\(callbackPort)/aliexpress/callback?code=abc")
        #expect(missing.status == 400)
        #expect(world.simulator.counters.codeExchanges == exchanges, "no refused callback spent a code")
        #expect(try Self.storeSnapshot(world, seller: revoked) == snapshot, "no refused callback changed keeper.db")
        #expect(try KeeperRow.all(in: world.storage)[revoked]?.status == "reauth_required")

        // The seller logs in on the authorization page, which sends the browser to the callback.
        let page = try await Browser.get(link)
        #expect(page.status == 302)
        let callback = try #require(page.location)
        #expect(callback.hasPrefix("http://127.0.0.1:\(callbackPort)/aliexpress/callback?code="))
        let landing = try await Browser.get(callback)
        #expect(landing.status == 200, "\(landing.body)")
        #expect(landing.body.contains("Authorized: seller \(revoked) is active again"))
        #expect(try KeeperRow.all(in: world.storage)[revoked]?.status == "active")
        expectSameToken(
            try KeeperRow.all(in: world.storage)[revoked]?.refreshToken,
            world.simulator.currentRefreshToken(for: revoked)?.exposedValue, "the new refresh token is stored")
        #expect(
            await eventually(timeout: .seconds(20)) {
                receiver.deliveries.contains { $0.kind == "reactivated" && $0.sellerID == revoked }
                    && hook.calls().contains { $0.kind == "reactivated" && $0.sellerID == revoked }
            }, "\(daemon.stderr.text.suffix(3000))")
        // Refreshed again by the daemon with its new tokens.
        let rotationsAfter = world.simulator.sellerStats(for: revoked)?.rotations ?? 0
        #expect(await eventually { (world.simulator.sellerStats(for: revoked)?.rotations ?? 0) > rotationsAfter })

        // Replays: the used link, with its old code or a fresh one, is refused.
        let exchangesAfter = world.simulator.counters.codeExchanges
        let replayed = try await Browser.get(callback)
        #expect(replayed.status == 400 && replayed.body.contains("already used"), "\(replayed.body)")
        let fresh = try await Browser.get(link)
        let replayedWithNewCode = try await Browser.get(try #require(fresh.location))
        #expect(replayedWithNewCode.status == 400 && replayedWithNewCode.body.contains("already used"))
        #expect(world.simulator.counters.codeExchanges == exchangesAfter, "a replay spends no code")
        #expect(
            try SQLiteReader.query(world.storage + "/keeper.db", "SELECT count(*) FROM events WHERE kind = 'enrolled'")
                .first?[0] == "1", "stored once, by the one accepted callback")

        // status and events show it.
        let status = try await world.run(["status", "--json"])
        #expect(status.exitCode == 0, "\(status)")
        let statusObject = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect((statusObject?["daemon"] as? [String: Any])?["running"] as? Bool == true)
        #expect((statusObject?["accounts"] as? [String: Any])?["active"] as? Int == 3)
        let events = try await world.run(["events", "--seller", revoked, "--kind", "reactivated", "--json"])
        #expect(events.stdout.split(separator: "\n").count == 1, "\(events)")
        let badKind = try await world.run(["events", "--kind", "reactivate"])
        #expect(badKind.exitCode == 64 && badKind.stderr.contains("reactivated"), "\(badKind)")

        await world.stop(daemon)
        #expect(world.simulator.counters.refreshTokenReuses == 0)
        let verdicts = try receiver.standardWebhooksVerdicts()
        #expect(
            verdicts.count >= 3 && verdicts.allSatisfy { $0 == nil },
            "standardwebhooks verifies every delivery: \(verdicts)")
        let pages = [page.body, landing.body, replayed.body, forged.body, expired.body, missing.body]
        let hookCalls = hook.calls()
        #expect(!hookCalls.isEmpty && hookCalls.allSatisfy { $0.environment.contains("TOKENKEEPER_EVENT=") })
        world.expectNoSecretsLeaked(
            in: receiver.deliveries.map(\.body) + hookCalls.map(\.body) + hookCalls.map(\.environment) + pages
                + [status.stdout],
            extraSecrets: [receiver.secret] + (try Self.stateKeys(world)))
    }

    /// What a refused callback must leave as it was: the seller's row and
    /// events, the outbox, the used states, the set of sellers (the others
    /// are refreshed meanwhile, which is not the callback's doing).
    static func storeSnapshot(_ world: EndToEndWorld, seller: String) throws -> [[String?]] {
        try SQLiteReader.query(
            world.storage + "/keeper.db",
            """
            SELECT (SELECT count(*) FROM events WHERE seller_id = '\(seller)'), (SELECT count(*) FROM outbox),
                (SELECT count(*) FROM used_states), (SELECT count(*) FROM accounts),
                (SELECT status || refresh_token || updated_at FROM accounts WHERE seller_id = '\(seller)')
            """)
    }

    /// tokenkeeper's own keys in keeper.db (the state key): secrets like any other.
    static func stateKeys(_ world: EndToEndWorld) throws -> [String] {
        try SQLiteReader.query(world.storage + "/keeper.db", "SELECT value FROM keys").compactMap { $0[0] }
    }

    /// The callback URL with one character in the middle of its state's
    /// signature changed (the last one may carry only padding bits).
    static func tamperingState(in url: String) -> String {
        guard var components = URLComponents(string: url), var items = components.queryItems,
            let index = items.firstIndex(where: { $0.name == "state" }), let value = items[index].value,
            let dot = value.lastIndex(of: ".")
        else { return url }
        var state = Array(value)
        let middle =
            value.distance(from: value.startIndex, to: dot)
            + (value.count - value.distance(from: value.startIndex, to: dot)) / 2
        state[middle] = state[middle] == "A" ? "B" : "A"
        items[index].value = String(state)
        components.queryItems = items
        return components.string ?? url
    }

    @Test(
        "a webhook receiver down for a while gets every event once back, none lost or repeated across restarts; refreshing stays on schedule"
    )
    func downReceiverGetsEveryEventOnceBack() async throws {
        let receiver = WebhookReceiver(secret: "whsec-" + UUID().uuidString)
        try await receiver.start()
        let port = receiver.port
        await receiver.stop()  // down from the start
        let (world, _) = try await Self.world(receiver: receiver, callbackPort: try freePort())
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(6, accessTokenLifetime: .seconds(6))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        var daemon = try world.startDaemon()
        try world.simulator.revoke(sellerID: ids[0])
        #expect(await eventually { (try? KeeperRow.all(in: world.storage)[ids[0]]?.status) == "reauth_required" })
        #expect(await eventually { (try? Self.pendingDeliveries(world)) ?? 0 >= 1 })
        await world.stop(daemon)

        // Restarted while the receiver is still down; another seller is revoked.
        daemon = try world.startDaemon()
        try world.simulator.revoke(sellerID: ids[1])
        #expect(await eventually { (try? KeeperRow.all(in: world.storage)[ids[1]]?.status) == "reauth_required" })
        try await Task.sleep(for: .seconds(4))
        #expect(receiver.deliveries.isEmpty)

        try await receiver.start(port: port)
        defer { Task { await receiver.stop() } }
        let expected = try Self.outboxEventIDs(world)
        #expect(expected.count >= 2, "reauth_required ×2 at least")
        #expect(
            await eventually(timeout: .seconds(30)) { Set(receiver.deliveries.compactMap(\.id)) == expected },
            "\(daemon.stderr.text.suffix(3000))")
        #expect(receiver.deliveries.filter { !$0.signatureValid }.isEmpty, "X-Tokenkeeper-Signature still verifies")
        let verdicts = try receiver.standardWebhooksVerdicts()
        #expect(
            !verdicts.isEmpty && verdicts.allSatisfy { $0 == nil },
            "standardwebhooks verifies every delivery: \(verdicts)")
        await world.stop(daemon)

        // Delivered state survives a restart: nothing is sent again.
        let count = receiver.deliveries.count
        daemon = try world.startDaemon()
        try await Task.sleep(for: .seconds(4))
        // The others' third rotation falls near the end of this run: wait for
        // it (bounded) rather than count on how fast the daemon starts and
        // stops; the checks below are unchanged.
        _ = await eventually(timeout: .seconds(15)) {
            ids.dropFirst(2).allSatisfy { (world.simulator.sellerStats(for: $0)?.rotations ?? 0) >= 3 }
        }
        await world.stop(daemon)
        #expect(receiver.deliveries.count == count, "no delivered event sent again after a restart")
        #expect(Set(receiver.deliveries.compactMap(\.id)) == (try Self.outboxEventIDs(world)))

        // Refreshing stayed on schedule: the others were never without a valid access token.
        let readers = try ReaderRow.all(in: world.storage)
        for sellerID in ids.dropFirst(2) {
            #expect((world.simulator.sellerStats(for: sellerID)?.rotations ?? 0) >= 3, "\(sellerID) refreshed")
            let row = readers.first { $0.sellerID == sellerID }
            #expect((row?.expireTime ?? 0) > nowMilliseconds(), "\(sellerID) has an unexpired access token")
        }
        #expect(world.simulator.counters.refreshTokenReuses == 0)
        world.expectNoSecretsLeaked(in: receiver.deliveries.map(\.body))
    }

    /// The ids receivers deduplicate by, of every event in the outbox.
    @Test("a receiver and a hook that hang hold back no refresh")
    func hangingReceiversNeverSlowRefreshing() async throws {
        let receiver = WebhookReceiver(secret: "whsec-" + UUID().uuidString, answerDelay: .seconds(60))
        try await receiver.start()
        defer { Task { await receiver.stop() } }
        let (world, hook) = try await Self.world(
            receiver: receiver, callbackPort: try freePort(),
            extra: ["notify.webhook_timeout_seconds": "3", "notify.command_timeout_seconds": "3"])
        defer { Task { await world.tearDown() } }
        // The hook never finishes on its own: it is killed at its timeout.
        try "#!/bin/sh\ncat > /dev/null\nexec sleep 60\n".write(toFile: hook.path, atomically: false, encoding: .utf8)
        let (ids, jsonl) = try world.seedSellers(6, accessTokenLifetime: .seconds(4))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let daemon = try world.startDaemon()
        // Every seller is within the 7-day window: six reauth_due events queue on both hanging channels.
        #expect(await eventually { receiver.deliveries.count >= 1 }, "\(daemon.stderr.text.suffix(2000))")
        let start = world.simulator.counters.rotations
        try await Task.sleep(for: .seconds(16))
        // 4-second tokens refreshed at 80 %: about five rounds in 16 s, whatever the receivers do.
        for sellerID in ids {
            #expect((world.simulator.sellerStats(for: sellerID)?.rotations ?? 0) >= 4, "\(sellerID) kept its schedule")
        }
        #expect(world.simulator.counters.rotations - start >= 6 * 3)
        let readers = try ReaderRow.all(in: world.storage)
        #expect(readers.allSatisfy { $0.expireTime > nowMilliseconds() }, "no access token expired")
        let result = await world.stop(daemon)
        #expect(result.stderr.contains("notification failed; it will be retried"))
        #expect(world.simulator.counters.refreshTokenReuses == 0)
        #expect(try receiver.standardWebhooksVerdicts().allSatisfy { $0 == nil }, "standardwebhooks verifies each")
        world.expectNoSecretsLeaked(in: receiver.deliveries.map(\.body))
    }

    static func outboxEventIDs(_ world: EndToEndWorld) throws -> Set<String> {
        Set(try SQLiteReader.query(world.storage + "/keeper.db", "SELECT uid FROM outbox").compactMap { $0[0] })
    }

    static func pendingDeliveries(_ world: EndToEndWorld) throws -> Int {
        let rows = try SQLiteReader.query(
            world.storage + "/keeper.db",
            "SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND channel = 'webhook'")
        return Int(rows.first?[0] ?? "0") ?? 0
    }

    @Test("a refresh token entering the warning window raises exactly one reauth_due")
    func reauthDueIsRaisedOnce() async throws {
        let receiver = WebhookReceiver(secret: "whsec-" + UUID().uuidString)
        try await receiver.start()
        defer { Task { await receiver.stop() } }
        // A window of 20 s, checked every second; the seller's refresh token ends 35 s from now.
        let (world, hook) = try await Self.world(
            receiver: receiver, callbackPort: try freePort(),
            extra: [
                "notify.reauth_warning_days": String(20.0 / 86_400), "notify.reauth_check_seconds": "1",
                "refresh.final_refresh_margin_seconds": "0",
            ])
        defer { Task { await world.tearDown() } }
        let soon = "5001"
        let later = "5002"
        world.simulator.addSeller(
            sellerID: soon, nick: "soon", accessTokenLifetime: .seconds(600), refreshTokenValidity: .seconds(35))
        world.simulator.addSeller(
            sellerID: later, nick: "later", accessTokenLifetime: .seconds(600), refreshTokenValidity: .seconds(3600))
        for sellerID in [soon, later] {
            let code = try world.simulator.issueAuthorizationCode(for: sellerID)
            #expect(try await world.run(["add", "--code", code]).exitCode == 0)
        }
        let daemon = try world.startDaemon()
        try await Task.sleep(for: .seconds(5))
        #expect(hook.calls().isEmpty, "outside the window: nothing yet")
        #expect(
            await eventually(timeout: .seconds(30)) { hook.calls().contains { $0.kind == "reauth_due" } },
            "\(daemon.stderr.text.suffix(2000))")
        try await Task.sleep(for: .seconds(6))  // six more checks inside the window
        await world.stop(daemon)
        let events = try SQLiteReader.query(
            world.storage + "/keeper.db", "SELECT seller_id FROM events WHERE kind = 'reauth_due'")
        #expect(events.map { $0[0] } == [soon])
        #expect(hook.calls().filter { $0.kind == "reauth_due" }.map(\.sellerID) == [soon])
        #expect(receiver.deliveries.filter { $0.kind == "reauth_due" }.count == 1)
        let object = try #require(receiver.deliveries.first { $0.kind == "reauth_due" }?.object)
        #expect(
            (object["reauth_by"] as? NSNumber)?.int64Value
                == world.simulator.refreshTokenValidTime(for: soon)?.millisecondsSince1970)
        #expect((object["authorize_url"] as? String)?.contains("state=") == true)
        #expect(try receiver.standardWebhooksVerdicts().allSatisfy { $0 == nil }, "standardwebhooks verifies each")
        world.expectNoSecretsLeaked(in: receiver.deliveries.map(\.body) + hook.calls().map(\.body))
    }

    @Test(
        "/metrics parses with Prometheus's own parser and its account counts match keeper.db; /healthz and /readyz answer"
    )
    func metricsMatchTheStore() async throws {
        let metricsPort = try freePort()
        let world = try await EndToEndWorld(settings: ["metrics.listen": "127.0.0.1:\(metricsPort)"])
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(5, accessTokenLifetime: .seconds(6))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        #expect(try await world.run(["disable", ids[4]]).exitCode == 0)
        let daemon = try world.startDaemon()
        let base = "http://127.0.0.1:\(metricsPort)"
        #expect(
            await eventually { (try? await Browser.get(base + "/readyz"))?.status == 200 },
            "\(daemon.stderr.text.suffix(2000))")
        try world.simulator.revoke(sellerID: ids[0])
        #expect(await eventually { (try? KeeperRow.all(in: world.storage)[ids[0]]?.status) == "reauth_required" })
        #expect(await eventually { (world.simulator.sellerStats(for: ids[1])?.rotations ?? 0) >= 2 })

        // The fleet's figures come from a sample the daemon reads in the
        // background (at most every 10 s, when scrapes ask): a scrape never
        // queries the store. The revocation shows once a newer sample is read.
        var stored: [String: Double] = [:]
        for row in try KeeperRow.all(in: world.storage).values { stored[row.status, default: 0] += 1 }
        var metrics = try await Browser.get(base + "/metrics")
        var parsed = try PrometheusText.parse(metrics.body)
        #expect(
            try await eventually(timeout: .seconds(30), every: .milliseconds(500)) {
                metrics = try await Browser.get(base + "/metrics")
                parsed = try PrometheusText.parse(metrics.body)
                return ["active", "reauth_required", "disabled"].allSatisfy {
                    parsed.value("tokenkeeper_accounts", ["app": "default", "status": $0]) == stored[$0] ?? 0
                }
            }, "\(metrics.body)")
        #expect(metrics.status == 200)
        #expect((parsed.value("tokenkeeper_fleet_figures_age_seconds", [:]) ?? 99) < 40)
        #expect(try await PromTool.checkMetrics(metrics.body) == "", "promtool check metrics")
        #expect(
            parsed.value("tokenkeeper_refreshes_total", ["app": "default", "outcome": "refreshed", "class": "none"])
                ?? 0 >= 2)
        #expect(
            parsed.value(
                "tokenkeeper_refreshes_total",
                ["app": "default", "outcome": "reauth_required", "class": "account_rejected"])
                == 1)
        #expect(
            parsed.value(
                "tokenkeeper_gateway_request_duration_seconds_count",
                ["app": "default", "api": "refresh", "result": "ok"]) ?? 0
                >= 2)
        #expect(parsed.value("tokenkeeper_ready", [:]) == 1)
        #expect(parsed.value("tokenkeeper_degraded", ["reason": "storage", "app": ""]) == 0)
        #expect((parsed.value("tokenkeeper_next_refresh_seconds", [:]) ?? -1000) > -10)
        // Relative to the sample's moment, which may be seconds old (a CI
        // run saw -0.12 s: a token refreshed since the sample was read):
        // when the sample was read, no active seller's token had expired.
        let sampleAge = parsed.value("tokenkeeper_fleet_figures_age_seconds", [:]) ?? 0
        #expect((parsed.value("tokenkeeper_earliest_access_expiry_seconds", [:]) ?? -1) + sampleAge > 0)
        #expect(parsed.samples.contains { $0.name == "tokenkeeper_build_info" && $0.value == 1 })
        let refreshSeries = Set(
            parsed.samples.filter { $0.name == "tokenkeeper_refreshes_total" }
                .map { "\($0.labels["outcome"] ?? "?")/\($0.labels["class"] ?? "?")" })
        #expect(
            refreshSeries == [
                "refreshed/none", "reauth_required/account_rejected", "failed/transient", "failed/throttled",
                "failed/configuration", "failed/account_rejected",
            ])
        #expect((try await Browser.get(base + "/healthz")).status == 200)
        #expect((try await Browser.get(base + "/nothing")).status == 404)
        await world.stop(daemon)
        world.expectNoSecretsLeaked(in: [metrics.body])
    }

    @Test("tokenkeeper backup during full-speed refreshing: the copy opens cleanly, passes integrity_check, is 0600")
    func backupUnderLoad() async throws {
        let world = try await EndToEndWorld(settings: [
            "refresh.max_calls_per_second": "0", "refresh.concurrency": "8",
        ])
        defer { Task { await world.tearDown() } }
        let (_, jsonl) = try world.seedSellers(150, accessTokenLifetime: .seconds(3))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(await eventually { world.simulator.counters.rotations >= 150 }, "\(daemon.stderr.text.suffix(2000))")
        let rotationsBefore = world.simulator.counters.rotations
        // Backups one after another until every seller was refreshed again meanwhile.
        var round = 0
        while round < 3 || world.simulator.counters.rotations < rotationsBefore + 150, round < 40 {
            defer { round += 1 }
            let destination = world.root.appendingPathComponent("backup-\(round).db").path
            let result = try await world.run(["backup", destination])
            #expect(result.exitCode == 0, "\(result)")
            let attributes = try FileManager.default.attributesOfItem(atPath: destination)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            #expect(try SQLiteReader.query(destination, "PRAGMA integrity_check").first?[0] == "ok")
            #expect(try SQLiteReader.query(destination, "SELECT count(*) FROM accounts").first?[0] == "150")
            let again = try await world.run(["backup", destination])
            #expect(again.exitCode != 0 && again.stderr.contains("exists"), "never overwrites")
        }
        #expect(world.simulator.counters.rotations > rotationsBefore, "refreshing went on meanwhile")
        await world.stop(daemon)
        #expect(world.simulator.counters.refreshTokenReuses == 0)
        world.expectNoSecretsLeaked()
    }
}

/// The exec hook: a shell script that keeps each call's stdin and environment.
struct Hook {
    struct Call {
        var id: String
        var kind: String
        var sellerID: String
        var body: String
        /// The environment the hook ran with.
        var environment: String
    }

    let path: String
    let directory: String

    init(in root: URL) throws {
        directory = root.appendingPathComponent("hook-calls").path
        path = root.appendingPathComponent("hook.sh").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            #!/bin/sh
            cat > "\(directory)/$TOKENKEEPER_EVENT_ID.$$.json"
            env > "\(directory)/$TOKENKEEPER_EVENT_ID.$$.env"
            printf '%s %s %s %s\\n' "$TOKENKEEPER_EVENT_ID" "$TOKENKEEPER_EVENT" "${TOKENKEEPER_SELLER_ID:--}" "$$" >> "\(directory)/calls.log"
            """
        _ = FileManager.default.createFile(
            atPath: path, contents: Data(script.utf8), attributes: [.posixPermissions: 0o755])
    }

    func calls() -> [Call] {
        guard let log = try? String(contentsOfFile: directory + "/calls.log", encoding: .utf8) else { return [] }
        return log.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count == 4 else { return nil }
            let body = (try? String(contentsOfFile: "\(directory)/\(parts[0]).\(parts[3]).json", encoding: .utf8)) ?? ""
            let environment =
                (try? String(contentsOfFile: "\(directory)/\(parts[0]).\(parts[3]).env", encoding: .utf8)) ?? ""
            return Call(
                id: parts[0], kind: parts[1], sellerID: parts[2], body: body.trimmingCharacters(in: .newlines),
                environment: environment)
        }
    }
}

/// The Prometheus text format read by Prometheus's own Python client
/// (`prometheus_client.parser`), not by a parser of ours.
struct PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var samples: [Sample]

    func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    static func parse(_ text: String) throws -> PrometheusText {
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(sys.stdin.read()):
                for s in family.samples:
                    out.append({"name": s.name, "labels": s.labels, "value": s.value})
            print(json.dumps(out))
            """
        // Debian's python3 with Debian's python3-prometheus-client (scripts/test installs both).
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let problem = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else {
            throw SQLiteReader.Failure(description: "the Prometheus parser refused the exposition: \(problem)")
        }
        return PrometheusText(
            samples: list.map { item in
                Sample(
                    name: item["name"] as? String ?? "", labels: item["labels"] as? [String: String] ?? [:],
                    value: (item["value"] as? NSNumber)?.doubleValue ?? .nan)
            })
    }
}
