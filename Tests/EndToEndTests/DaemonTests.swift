import Foundation
import IOPSimulator
import Synchronization
import Testing
import TokenKeeperCore

/// `tokenkeeper run` for real: the binary, IOPSimulator over loopback HTTP,
/// and the SQLite files as readers see them.
@Suite("Daemon end to end")
struct DaemonTests {
    /// Polls tokens.db as a reader would, and records every active row whose
    /// `expire_time` had passed when it was read.
    final class ReaderWatch: Sendable {
        private let stale = Mutex<[String]>([])
        private let reads = Mutex(0)
        private let stopped = Mutex(false)
        private let lateness = Mutex<Int64>(0)
        private let failures = Mutex<[String]>([])

        func watch(_ storage: String) async {
            while !stopped.withLock({ $0 }) {
                let rows: [ReaderRow]?
                do {
                    rows = try ReaderRow.all(in: storage)
                } catch {
                    // A reader following the contract never fails: count it.
                    failures.withLock { $0.append("\(error)") }
                    rows = nil
                }
                if let rows {
                    let now = nowMilliseconds()
                    let late = rows.filter { $0.status == "active" && $0.expireTime <= now }
                    stale.withLock { $0 += late.map { "\($0.sellerID) expired \(now - $0.expireTime) ms ago" } }
                    lateness.withLock { worst in worst = late.map { now - $0.expireTime }.reduce(worst, max) }
                    reads.withLock { $0 += 1 }
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }

        func stop() { stopped.withLock { $0 = true } }
        /// The longest a reader saw an active row past its expiry, in milliseconds.
        var worstLateness: Int64 { lateness.withLock { $0 } }
        var staleRows: [String] { stale.withLock { $0 } }
        var readCount: Int { reads.withLock { $0 } }
        var readFailures: [String] { failures.withLock { $0 } }
    }

    static let runSeconds = 90
    /// 50 sellers enrolled together with 20 s tokens all fall due within one
    /// second, 4 s before expiry. At the default 10 calls/s the last one would
    /// go out 5 s later: too late. Real tokens live hours; these tests give the
    /// daemon the call rate such a scene needs.
    static let settings = ["refresh.max_calls_per_second": "50", "refresh.concurrency": "8"]

    @Test("50 sellers with 20 s tokens for 90 s: refreshed again and again, one revoked, CLI refresh beside")
    func fiftySellers() async throws {
        let world = try await EndToEndWorld(settings: Self.settings)
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(50, accessTokenLifetime: .seconds(20))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let victim = ids[7]

        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")
        let start = ContinuousClock.now
        let watch = ReaderWatch()
        let watcher = Task { await watch.watch(world.storage) }

        // `tokenkeeper refresh` from the command line while the daemon runs.
        let cli = Task {
            var results: [CommandResult] = []
            var index = 0
            while ContinuousClock.now - start < .seconds(60) {
                let seller = ids[(index * 7 + 1) % ids.count]
                index += 1
                if seller != victim { results.append(try await world.run(["refresh", seller])) }
                try await Task.sleep(for: .seconds(2))
            }
            return results
        }

        try await Task.sleep(for: .seconds(20))
        try world.simulator.revoke(sellerID: victim)
        #expect(
            await eventually(timeout: .seconds(40)) {
                (try? KeeperRow.all(in: world.storage)[victim]?.status) == "reauth_required"
            })
        let victimCalls = world.simulator.sellerStats(for: victim)?.refreshRequests ?? -1

        let cliResults = try await cli.value
        let remaining = Duration.seconds(Self.runSeconds) - (ContinuousClock.now - start)
        if remaining > .zero { try await Task.sleep(for: remaining) }
        daemon.signal(SIGTERM)
        let stoppedAt = ContinuousClock.now
        let result = await daemon.wait(timeout: .seconds(15))
        #expect(ContinuousClock.now - stoppedAt < .seconds(10))
        #expect(result.exitCode == 0, "\(result.stderr.suffix(3000))")
        watch.stop()
        await watcher.value
        world.record(result.stdout + result.stderr)

        // Readers never saw an active row whose token had expired.
        #expect(watch.readCount > 100)
        #expect(watch.staleRows.isEmpty, "\(watch.staleRows.prefix(10))")
        // No refresh token reused, never two refreshes of one seller at once.
        let counters = world.simulator.counters
        #expect(counters.refreshTokenReuses == 0)
        #expect(counters.overlappingRefreshes == 0)
        // Every seller but the victim refreshed again and again, and active.
        let keeper = try KeeperRow.all(in: world.storage)
        for sellerID in ids where sellerID != victim {
            let rotations = world.simulator.sellerStats(for: sellerID)?.rotations ?? 0
            #expect(rotations >= 4, "seller \(sellerID) rotated \(rotations) times")
            #expect(keeper[sellerID]?.status == "active")
            expectSameToken(
                keeper[sellerID]?.refreshToken,
                world.simulator.rotationsHandedOut(for: sellerID).last?.refreshToken.exposedValue,
                "stored refresh token")
        }
        // The victim: reauth_required after one refused attempt, no calls since.
        #expect(world.simulator.sellerStats(for: victim)?.rejectedRefreshes == 1)
        #expect(world.simulator.sellerStats(for: victim)?.refreshRequests == victimCalls)
        let victimRow = try ReaderRow.all(in: world.storage).first { $0.sellerID == victim }
        #expect(victimRow?.status == "reauth_required")
        #expect(victimRow?.statusReason == "IllegalRefreshToken")
        // The CLI refreshes all worked or found the seller leased by the daemon.
        // About 25 on a quiet machine; fewer when every process is slowed
        // (ThreadSanitizer), but always a real stream beside the daemon.
        #expect(cliResults.count >= 10)
        for cliResult in cliResults {
            #expect(
                cliResult.exitCode == 0 || cliResult.stderr.contains("being refreshed by another process"),
                "\(cliResult)")
        }
        #expect(cliResults.filter { $0.exitCode == 0 }.count >= cliResults.count / 2)
        world.expectNoSecretsLeaked()
    }

    @Test("the gateway failing 30% of calls (every fault kind) for the whole run marks no seller")
    func thirtyPercentFaults() async throws {
        let world = try await EndToEndWorld(settings: Self.settings.merging(["gateway.timeout_seconds": "3"]) { $1 }) {
            behavior in
            behavior.slowResponseDelay = .seconds(4)
        }
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(50, accessTokenLifetime: .seconds(20))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        world.simulator.setFaultInjection(.uniform(rate: 0.3, over: FaultKind.withoutEffect))

        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") })
        let watch = ReaderWatch()
        let watcher = Task { await watch.watch(world.storage) }
        try await Task.sleep(for: .seconds(Self.runSeconds))
        // At the end, faults still on and the daemon running: every token
        // valid (one caught mid-retry gets time to come through; see below).
        var rows: [ReaderRow] = []
        let allValid = await eventually(timeout: .seconds(30), every: .milliseconds(200)) {
            rows = (try? ReaderRow.all(in: world.storage)) ?? []
            return rows.count == ids.count
                && rows.allSatisfy {
                    $0.status == "active" && world.simulator.accessTokenStatus($0.accessToken).isValid
                }
        }
        #expect(allValid)
        for row in rows {
            #expect(row.status == "active", "\(row.sellerID) is \(row.status) (\(row.statusReason ?? "-"))")
            #expect(world.simulator.accessTokenStatus(row.accessToken).isValid, "\(row.sellerID)'s token is not valid")
        }
        watch.stop()
        await watcher.value
        #expect(watch.readCount > 100, "a reader polled tokens.db all along (\(watch.readCount) reads)")
        #expect(watch.readFailures.isEmpty, "\(watch.readFailures.prefix(3))")
        daemon.signal(SIGTERM)
        let result = await daemon.wait(timeout: .seconds(15))
        #expect(result.exitCode == 0, "\(result.stderr.suffix(3000))")
        world.record(result.stdout + result.stderr)
        // With 4 s between the planned refresh and expiry, 30% failures,
        // one-second throttling bans and retries up to 4 s apart, a token may
        // run out while its retries go on (n failures in a row: about n × 4 s;
        // 0.3^n per refresh). What must never happen is a seller left behind:
        // 45 s would take 11 failures in a row, odds of about 2 in a million.
        #expect(watch.worstLateness < 45_000, "a token stayed expired \(watch.worstLateness) ms")

        let counters = world.simulator.counters
        for kind in FaultKind.withoutEffect {
            #expect((counters.faults[kind] ?? 0) > 0, "fault \(kind) never happened")
        }
        #expect(counters.refreshTokenReuses == 0)
        #expect(counters.overlappingRefreshes == 0)
        #expect(rows.count == ids.count)
        #expect(try KeeperRow.all(in: world.storage).values.allSatisfy { $0.status == "active" })
        for sellerID in ids {
            #expect((world.simulator.sellerStats(for: sellerID)?.rotations ?? 0) >= 3)
        }
        world.expectNoSecretsLeaked()
    }

    @Test("a wrong app secret: no seller marked, one clear error, fixed by SIGHUP; one daemon per directory")
    func wrongSecretThenSIGHUP() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(5, accessTokenLifetime: .seconds(600), withAccessToken: false)
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        try world.writeSecret("wrong-secret-value")

        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("IncompleteSignature") }, "\(daemon.stderr.text)")

        // A second daemon on the same storage is refused, naming the holder.
        let second = try await world.run(["run"])
        #expect(second.exitCode == 1, "\(second)")
        #expect(second.stderr.contains("process \(daemon.pid)"), "\(second.stderr)")

        let errors = daemon.stderr.text.split(separator: "\n").filter {
            $0.contains("ERROR") && $0.contains("IncompleteSignature")
        }
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.contains("signature") == true)
        #expect(try KeeperRow.all(in: world.storage).values.allSatisfy { $0.status == "active" })
        // Until the first answer the daemon cannot know: at most `concurrency`
        // (4) calls went out; after it, everyone is held back (the next probe
        // is a minute away).
        try await Task.sleep(for: .seconds(1))  // the calls already sent land
        let callsAtError = world.simulator.counters.requests
        #expect(callsAtError <= 4)
        try await Task.sleep(for: .seconds(2))
        #expect(world.simulator.counters.requests == callsAtError)

        try world.writeSecret(world.appSecret.exposedValue)
        try world.writeConfig(["refresh.concurrency": "2", "refresh.max_calls_per_second": "7"])
        daemon.signal(SIGHUP)
        #expect(
            await eventually(timeout: .seconds(20)) {
                (try? ReaderRow.all(in: world.storage).count) == ids.count
            }, "\(daemon.stderr.text.suffix(2000))")
        // The refresh settings were reloaded too.
        let applied = daemon.stderr.text.split(separator: "\n").filter { $0.contains("refresh settings applied") }
        #expect(applied.count == 1 && applied.first?.contains("concurrency=2") == true, "\(applied)")
        #expect(applied.first?.contains("max_calls_per_second=7.0") == true, "\(applied)")
        daemon.signal(SIGTERM)
        let result = await daemon.wait(timeout: .seconds(15))
        #expect(result.exitCode == 0, "\(result.stderr.suffix(2000))")
        world.record(result.stdout + result.stderr + second.stdout + second.stderr)
        #expect(try ReaderRow.all(in: world.storage).allSatisfy { $0.status == "active" })
        #expect(!result.stderr.contains("wrong-secret-value"))
        world.expectNoSecretsLeaked()
    }

    @Test(
        "SIGTERM during heavy refreshing: exit 0 within 10 s, every rotation handed out is in keeper.db; a restart carries on"
    )
    func sigtermDuringHeavyRefreshing() async throws {
        let world = try await EndToEndWorld(settings: [
            "refresh.max_calls_per_second": "0", "refresh.concurrency": "8",
        ]) { behavior in
            behavior.responseLatency = .milliseconds(40)
        }
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(400, accessTokenLifetime: .seconds(600), withAccessToken: false)
        let seeded = try KeeperRowsBeforeStart(jsonl: jsonl)
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)

        let daemon = try world.startDaemon()
        #expect(await eventually { world.simulator.counters.rotations >= 40 })
        daemon.signal(SIGTERM)
        let stoppedAt = ContinuousClock.now
        let result = await daemon.wait(timeout: .seconds(15))
        let took = ContinuousClock.now - stoppedAt
        #expect(took < .seconds(10), "took \(took)")
        #expect(result.exitCode == 0, "\(result.stderr.suffix(2000))")
        world.record(result.stdout + result.stderr)

        let rotations = world.simulator.counters.rotations
        #expect(rotations < ids.count, "the daemon finished everything before SIGTERM; the test proves nothing")
        let keeper = try KeeperRow.all(in: world.storage)
        for sellerID in ids {
            let expected =
                world.simulator.rotationsHandedOut(for: sellerID).last?.refreshToken.exposedValue
                ?? seeded.refreshTokens[sellerID]
            expectSameToken(keeper[sellerID]?.refreshToken, expected, "seller \(sellerID) lost a rotation")
        }
        #expect(world.simulator.counters.refreshTokenReuses == 0)

        // A new daemon carries on from keeper.db: the rest are refreshed, with
        // no refresh token sent twice and none lost.
        let restarted = try world.startDaemon()
        #expect(
            await eventually(timeout: .seconds(30)) {
                ids.allSatisfy { !world.simulator.rotationsHandedOut(for: $0).isEmpty }
            }, "\(restarted.stderr.text.suffix(2000))")
        restarted.signal(SIGTERM)
        let second = await restarted.wait(timeout: .seconds(15))
        #expect(second.exitCode == 0)
        world.record(second.stdout + second.stderr)
        #expect(world.simulator.counters.refreshTokenReuses == 0)
        #expect(world.simulator.counters.overlappingRefreshes == 0)
        #expect(try ReaderRow.all(in: world.storage).count == ids.count)
        let final = try KeeperRow.all(in: world.storage)
        for sellerID in ids {
            expectSameToken(
                final[sellerID]?.refreshToken, world.simulator.currentRefreshToken(for: sellerID)?.exposedValue,
                "stored refresh token")
        }
        world.expectNoSecretsLeaked()
    }
}

/// The refresh tokens given to `import`, by seller.
struct KeeperRowsBeforeStart {
    var refreshTokens: [String: String] = [:]

    init(jsonl: String) throws {
        for line in jsonl.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            if let seller = object["seller_id"] as? String, let token = object["refresh_token"] as? String {
                refreshTokens[seller] = token
            }
        }
    }
}
