import Foundation
import IOPSimulator
import Synchronization
import Testing
import TokenKeeperCore

/// An operator's `import --file` of many sellers while the daemon keeps
/// short-lived tokens alive (issue 15, case 3): the import's write
/// transactions must leave the daemon the write lock within moments, so that
/// no token runs out, nobody is marked, nothing is reported DEGRADED and no
/// refresh starts late.
///
/// The daemon writes keeper.db and tokens.db several times per refresh (the
/// lease, the rotated pair, the readers' row); each write waits for whatever
/// transaction the import holds. The issue's report: with SQLite's own busy
/// handler, an import of 300,000 (about 8 s, release build) let 22 of 30 such
/// tokens expire. How often a waiter missed the import's gaps depends on the
/// machine (a fast parser leaves only short gaps); LockFairnessTests in
/// SQLiteStoreTests pins the rhythm that makes it miss every one.
@Suite("Import beside the daemon end to end")
struct ImportBesideDaemonTests {
    /// Sellers the daemon keeps alive, and their tokens' lifetime.
    static let liveSellers = 30
    static let lifetimeSeconds = 15

    /// How many sellers the import brings: the issue's 500,000 (about 15 s
    /// in a debug build, the test about 40 s, beside the rest of the suite);
    /// TOKENKEEPER_IMPORT_SELLERS sets another count (150,000 still overlaps
    /// a dozen refreshes).
    static var importedSellers: Int {
        Int(ProcessInfo.processInfo.environment["TOKENKEEPER_IMPORT_SELLERS"] ?? "") ?? 500_000
    }

    @Test("import --file of many sellers beside a daemon keeping 30 15 s tokens alive: none expires or starts late")
    func importBesideLiveTokens() async throws {
        let metricsPort = try freePort()
        let world = try await EndToEndWorld(settings: [
            "metrics.listen": "127.0.0.1:\(metricsPort)",
            // No call rate limit: the live sellers fall due a quarter second
            // apart and need none, and with one the scheduler plans its lead
            // by sorting every deadline (at 500,000, in a debug build, long
            // enough to start refreshes up to a second late by itself).
            "refresh.max_calls_per_second": "0", "refresh.concurrency": "8",
        ])
        defer { Task { await world.tearDown() } }
        let count = Self.importedSellers
        let bigFile = world.root.appendingPathComponent("sellers.jsonl").path
        try Self.writeImportFile(bigFile, count: count)

        // The live sellers' tokens were issued a quarter second apart, so that
        // refreshes fall due all along the import rather than all at once.
        let ids = try await Self.seedStaggered(world)
        let socket = try NotifySocket(path: world.root.path + "/notify.sock")
        let daemon = try world.startDaemon(environment: ["NOTIFY_SOCKET": socket.path])
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")
        let watch = LiveTokenWatch(storage: world.storage, socket: socket)
        let watcher = Task { await watch.run() }
        // The first refreshes are under way before the import starts.
        #expect(await eventually { world.simulator.counters.rotations >= 3 }, "\(daemon.stderr.text.suffix(2000))")

        let rotationsBefore = world.simulator.counters.rotations
        let importStart = ContinuousClock.now
        let imported = try await TokenKeeperProcess.run(
            ["import", "--file", bigFile, "--config", world.configPath], timeout: .seconds(900))
        let importTime = ContinuousClock.now - importStart
        world.record(imported.stdout + imported.stderr)
        let rotationsDuring = world.simulator.counters.rotations - rotationsBefore
        #expect(imported.exitCode == 0, "\(imported)")
        #expect(imported.stdout.contains("imported \(count) sellers"), "\(imported.stdout)")

        // One more token lifetime: a refresh held back by the import shows
        // as an expired token or a late start by then.
        let rotationsAfterImport = world.simulator.counters.rotations
        try await Task.sleep(for: .seconds(Self.lifetimeSeconds))
        #expect(world.simulator.counters.rotations >= rotationsAfterImport + Self.liveSellers / 2, "refreshing went on")
        let metrics = try await Browser.get("http://127.0.0.1:\(metricsPort)/metrics")
        let result = await world.stop(daemon)
        watch.stop()
        await watcher.value
        let endedAt = nowMilliseconds()

        // The import overlapped many refreshes.
        #expect(rotationsDuring >= 5, "only \(rotationsDuring) refreshes during the import; the test proves little")

        // No refresh started more than a second after its planned time.
        #expect(metrics.status == 200)
        let parsed = try PrometheusText.parse(metrics.body)
        let delays = StartDelays(parsed)
        #expect(delays.count >= Double(Self.liveSellers), "\(delays)")
        #expect(delays.within(seconds: 1) == delays.count, "refreshes started over a second late: \(delays)")

        // No access token expired: at the gateway, each seller's next pair
        // was issued before the one before it ran out; in tokens.db, no
        // reader ever saw an active row past its expiry.
        let counters = world.simulator.counters
        #expect(counters.refreshesAfterAccessExpiry == 0)
        #expect(counters.refreshTokenReuses == 0)
        #expect(counters.overlappingRefreshes == 0)
        var gaps: [String] = []
        for sellerID in ids {
            let pairs = world.simulator.issuedTokens(for: sellerID).sorted { $0.issuedAt < $1.issuedAt }
            for (previous, next) in zip(pairs, pairs.dropFirst()) where next.issuedAt >= previous.expireTime {
                gaps.append("\(sellerID) without a valid token for \(next.issuedAt - previous.expireTime)")
            }
            if let last = pairs.last, last.expireTime.millisecondsSince1970 <= endedAt {
                gaps.append("\(sellerID)'s last token expired at the end")
            }
        }
        #expect(gaps.isEmpty, "\(gaps.prefix(10))")
        #expect(watch.readCount > 20, "a reader polled tokens.db all along (\(watch.readCount) reads)")
        #expect(watch.expired.isEmpty, "readers saw expired tokens: \(watch.expired.prefix(10))")
        #expect(watch.readFailures.isEmpty, "\(watch.readFailures.prefix(3))")
        // How long each rotated pair took from the gateway to readers,
        // printed (read every 100 ms, so up to that much later than it
        // happened). A figure, not a bound: a commit's fsync on a machine
        // loaded by the whole suite took a second once; what readers must
        // never see, an expired token, is checked above.
        var publication: [Int64] = []
        for change in watch.published {
            let issued = world.simulator.issuedTokens(for: change.sellerID)
            if let pair = issued.first(where: { $0.accessToken.exposedValue == change.accessToken }) {
                publication.append(change.seenAt - pair.issuedAt.millisecondsSince1970)
            }
        }
        publication.sort()
        #expect(publication.count >= rotationsDuring / 2, "\(publication.count) rotations seen in tokens.db")
        let slowest = publication.last ?? -1
        let median = publication.isEmpty ? -1 : publication[publication.count / 2]
        print(
            "import beside the daemon: rotated tokens reached tokens.db in \(median) ms (median), \(slowest) ms (slowest)"
        )

        // Nobody marked; everything imported, in both files; the rotated
        // refresh tokens stored.
        let keeper = try KeeperRow.all(in: world.storage)
        for sellerID in ids {
            #expect(keeper[sellerID]?.status == "active", "\(sellerID) is \(keeper[sellerID]?.status ?? "gone")")
            expectSameToken(
                keeper[sellerID]?.refreshToken, world.simulator.currentRefreshToken(for: sellerID)?.exposedValue,
                "stored refresh token")
        }
        let statuses = try SQLiteReader.query(
            world.storage + "/keeper.db", "SELECT status, count(*) FROM accounts GROUP BY status")
        #expect(statuses.map { $0.compactMap { $0 } } == [["active", "\(count + ids.count)"]], "\(statuses)")
        let readers = try SQLiteReader.query(world.storage + "/tokens.db", "SELECT count(*) FROM tokens")
        #expect(readers.first?.first == "\(count + ids.count)")

        // No DEGRADED, nothing critical, no write that gave up on the lock.
        let log = result.stderr.split(separator: "\n")
        let failures = log.filter { $0.contains(" CRITICAL ") || $0.contains(" ERROR ") }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        let contention = log.filter { $0.contains("holds the store's write lock") }
        #expect(contention.isEmpty, "the daemon waited out its busy timeout: \(contention.prefix(3))")
        #expect(!watch.statusLines.isEmpty)
        let degraded = watch.statusLines.filter { $0.contains("DEGRADED") }
        #expect(degraded.isEmpty, "\(degraded.prefix(3))")
        #expect(parsed.value("tokenkeeper_degraded", ["reason": "storage", "app": ""]) == 0)

        print(
            """
            import beside the daemon: \(count) sellers imported in \(importTime) with \(rotationsDuring) refreshes \
            meanwhile; start delays \(delays); from the gateway to tokens.db: median \
            \(publication.isEmpty ? -1 : publication[publication.count / 2]) ms, slowest \(slowest) ms \
            (\(publication.count) rotations); latest reader saw a token \(watch.worstLateness) ms past expiry
            """)
        world.expectNoSecretsLeaked(in: watch.statusLines)
    }

    /// Adds the live sellers to the simulator with pairs issued a quarter
    /// second apart (the last one newest), and imports them with their
    /// lifetime, so that each is first refreshed when a fifth of it is left.
    static func seedStaggered(_ world: EndToEndWorld) async throws -> [String] {
        let now = SystemWallClock().now()
        var ids: [String] = []
        var lines = ""
        for index in 0..<liveSellers {
            let sellerID = "31" + String(format: "%06d", index)
            world.simulator.addSeller(
                sellerID: sellerID, nick: "live-\(index)", accessTokenLifetime: .seconds(lifetimeSeconds),
                refreshTokenValidity: .seconds(3600))
            let issuedAt = now - .milliseconds(250 * Int64(liveSellers - 1 - index))
            let pair = try world.simulator.seedTokens(for: sellerID, issuedAt: issuedAt)
            ids.append(sellerID)
            let object: [String: Any] = [
                "seller_id": sellerID, "refresh_token": pair.refreshToken.exposedValue,
                "access_token": pair.accessToken.exposedValue, "expire_time": pair.expireTime.millisecondsSince1970,
                "expires_in": lifetimeSeconds,
                "refresh_token_valid_time": pair.refreshTokenValidTime.millisecondsSince1970,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            lines += String(decoding: data, as: UTF8.self) + "\n"
        }
        let result = try await world.run(["import", "--file", "-"], stdin: lines)
        #expect(result.stdout.contains("imported \(liveSellers) sellers"), "\(result)")
        return ids
    }

    /// `count` sellers the daemon has no reason to refresh during the test
    /// (access tokens valid for a day or two), as an `import --file` input.
    static func writeImportFile(_ path: String, count: Int) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
            let file = FileHandle(forWritingAtPath: path)
        else { throw CocoaError(.fileWriteUnknown) }
        defer { try? file.close() }
        let now = nowMilliseconds()
        let validUntil = now + 30 * 86_400_000
        var chunk = ""
        chunk.reserveCapacity(1 << 21)
        for index in 0..<count {
            // Spread over a day, as a real fleet's are: sellers all due at one
            // moment would make the scheduler start everyone early.
            let expire = now + 86_400_000 + Int64(index) * (86_400_000 / Int64(count))
            let number = String(index)
            let padded = String(repeating: "0", count: max(0, 7 - number.count)) + number
            chunk += """
                {"seller_id":"7\(padded)","refresh_token":"imported-refresh-\(padded)-0123456789abcdef",\
                "access_token":"imported-access-\(padded)-0123456789abcdef","expire_time":\(expire),\
                "refresh_token_valid_time":\(validUntil),"user_nick":"imported-\(padded)"}

                """
            if chunk.utf8.count >= 1 << 20 {
                try file.write(contentsOf: Data(chunk.utf8))
                chunk.removeAll(keepingCapacity: true)
            }
        }
        try file.write(contentsOf: Data(chunk.utf8))
    }
}

/// `tokenkeeper_refresh_start_delay_seconds` as scraped: how many starts fell
/// within each bucket bound.
struct StartDelays: CustomStringConvertible {
    var buckets: [(bound: Double, count: Double)]
    var count: Double

    init(_ metrics: PrometheusText) {
        buckets = metrics.samples.filter { $0.name == "tokenkeeper_refresh_start_delay_seconds_bucket" }
            .compactMap { sample in sample.labels["le"].flatMap(Double.init).map { ($0, sample.value) } }
            .sorted { $0.bound < $1.bound }
        count = metrics.samples.first { $0.name == "tokenkeeper_refresh_start_delay_seconds_count" }?.value ?? 0
    }

    /// Starts no later than `seconds` after their planned time.
    func within(seconds: Double) -> Double {
        buckets.first { $0.bound == seconds }?.count ?? -1
    }

    var description: String {
        let worst = buckets.first { $0.count == count }.map { "all within \($0.bound) s" } ?? "some past every bucket"
        let shown = buckets.filter { $0.bound <= 2.5 }.map { "≤\($0.bound)s: \(Int($0.count))" }
        return "\(Int(count)) starts, \(worst) (\(shown.joined(separator: ", ")))"
    }
}

/// Polls the live sellers' rows in tokens.db as a reader would (a primary-key
/// range, not the imported rows) and drains the daemon's sd_notify lines.
final class LiveTokenWatch: Sendable {
    let storage: String
    let socket: NotifySocket
    private let state = Mutex(State())

    struct State {
        var stopped = false
        var reads = 0
        var expired: [String] = []
        var worst: Int64 = 0
        var failures: [String] = []
        /// Each seller's access token as last read.
        var current: [String: String] = [:]
        /// Access tokens that replaced another, with when they were first read.
        var published: [(sellerID: String, accessToken: String, seenAt: Int64)] = []
    }

    init(storage: String, socket: NotifySocket) {
        self.storage = storage
        self.socket = socket
    }

    func run() async {
        while !state.withLock({ $0.stopped }) {
            _ = socket.lines
            do {
                let rows = try SQLiteReader.query(
                    storage + "/tokens.db",
                    "SELECT seller_id, expire_time, status, access_token FROM tokens "
                        + "WHERE seller_id >= '31' AND seller_id < '32'")
                let now = nowMilliseconds()
                let late = rows.filter { $0[2] == "active" && (Int64($0[1] ?? "") ?? 0) <= now }
                state.withLock { state in
                    state.reads += 1
                    for row in rows {
                        guard let sellerID = row[0], let token = row[3] else { continue }
                        let previous = state.current.updateValue(token, forKey: sellerID)
                        if let previous, previous != token { state.published.append((sellerID, token, now)) }
                    }
                    for row in late {
                        let by = now - (Int64(row[1] ?? "") ?? 0)
                        state.expired.append("\(row[0] ?? "?") expired \(by) ms ago")
                        state.worst = max(state.worst, by)
                    }
                }
            } catch {
                state.withLock { $0.failures.append("\(error)") }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func stop() { state.withLock { $0.stopped = true } }
    var readCount: Int { state.withLock { $0.reads } }
    var expired: [String] { state.withLock { $0.expired } }
    var worstLateness: Int64 { state.withLock { $0.worst } }
    var readFailures: [String] { state.withLock { $0.failures } }
    var published: [(sellerID: String, accessToken: String, seenAt: Int64)] { state.withLock { $0.published } }
    var statusLines: [String] { socket.lines.filter { $0.hasPrefix("STATUS=") } }
}
