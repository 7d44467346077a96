import Foundation
import IOPSimulator
import Testing
import TokenKeeperCore

/// The listeners as strangers meet them: the callback is the one part of
/// tokenkeeper on the internet.
@Suite("Listeners in front of strangers")
struct ListenerHardeningTests {
    /// Percent-encoded, as a URL carries them: CR-LF, LF, CR, NEL, U+2028,
    /// U+2029, ESC, NUL, DEL and a right-to-left override.
    static let hostile = ["%0D%0A", "%0A", "%0D", "%C2%85", "%E2%80%A8", "%E2%80%A9", "%1B", "%00", "%7F", "%E2%80%AE"]

    @Test(
        "callback URLs carrying control characters in every parameter leave no forged line and no raw control character in the log"
    )
    func controlCharactersInCallbackURLsForgeNothing() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let port = try freePort()
        let callback = "http://127.0.0.1:\(port)/aliexpress/callback"
        try world.writeConfig(["callback.listen": "127.0.0.1:\(port)", "app.redirect_uri": callback])
        let (ids, jsonl) = try world.seedSellers(1, accessTokenLifetime: .seconds(3600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        world.simulator.updateBehavior { $0.loggedInSeller = ids[0] }
        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("callback listener ready") })
        let exchanges = world.simulator.counters.codeExchanges
        for raw in Self.hostile {
            let forged = "x\(raw)%3C2%3EFORGED\(raw)FORGED%20line\(raw)"
            // No valid state: refused before anything is read.
            let stranger = try await Browser.get(
                "\(callback)?state=\(forged)&code=\(forged)&error=\(forged)&\(forged)=\(forged)")
            #expect(stranger.status == 400)
            // A valid state (a fresh link each time) with a hostile error and a hostile code.
            for parameter in ["error", "code"] {
                let link = try await world.run(["authorize-url", "--seller", ids[0]])
                let redirect = try #require(
                    try await Browser.get(link.stdout.trimmingCharacters(in: .whitespacesAndNewlines)).location)
                var components = try #require(URLComponents(string: redirect))
                let state = try #require(components.queryItems?.first { $0.name == "state" }?.value)
                components.query = nil
                let url =
                    "\(try #require(components.string))?state=\(state)&\(parameter)=\(forged)"
                    + (parameter == "error" ? "&code=\(forged)" : "")
                let page = try await Browser.get(url)
                #expect([400, 502, 503].contains(page.status), "\(page.status) \(page.body)")
            }
        }
        #expect(world.simulator.counters.codeExchanges - exchanges <= Self.hostile.count, "only the codes were tried")
        await world.stop(daemon)
        let log = daemon.stderr.text
        #expect(log.contains("FORGED"), "the hostile values reached the log, escaped")
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        for line in lines {
            #expect(!line.contains("<2>FORGED") || !line.hasPrefix("<"), "a forged line: \(line.debugDescription)")
            #expect(line.first?.isNumber == true, "every line starts with the handler's time: \(line.debugDescription)")
            let raw = line.unicodeScalars.first {
                $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || [0x2028, 0x2029, 0x202E].contains($0.value)
            }
            #expect(raw == nil, "a raw control character: \(line.debugDescription)")
        }
        world.expectNoSecretsLeaked()
    }

    @Test(
        "1,500 half-sent connections to the callback for 40 s, under 1,024 open files, with a gateway that closes every connection: refreshing stays on schedule; then the callback and /healthz answer at once"
    )
    func halfSentConnectionsStarveNothing() async throws {
        let world = try await EndToEndWorld {
            $0.closesConnectionAfterAnswer = true
        }
        defer { Task { await world.tearDown() } }
        let callbackPort = try freePort()
        let metricsPort = try freePort()
        let callback = "http://127.0.0.1:\(callbackPort)/aliexpress/callback"
        try world.writeConfig([
            "callback.listen": "127.0.0.1:\(callbackPort)", "app.redirect_uri": callback,
            "metrics.listen": "127.0.0.1:\(metricsPort)",
        ])
        let (ids, jsonl) = try world.seedSellers(20, accessTokenLifetime: .seconds(15))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let daemon = try world.startDaemon(launcher: ["/usr/bin/prlimit", "--nofile=1024:1024", "--"])
        #expect(
            await eventually { daemon.stderr.text.contains("callback listener ready") },
            "\(daemon.stderr.text.suffix(2000))")
        let rotationsBefore = ids.map { world.simulator.sellerStats(for: $0)?.rotations ?? 0 }

        let attackStarted = ContinuousClock.now
        async let attack = HalfSentConnections.hold(1500, port: callbackPort, for: .seconds(40))
        try await Task.sleep(until: attackStarted + .seconds(38))
        // Still under attack: every seller was refreshed meanwhile, and none
        // is without a valid access token.
        let rotationsDuring = ids.map { world.simulator.sellerStats(for: $0)?.rotations ?? 0 }
        let readAt = nowMilliseconds()
        let readers = try ReaderRow.all(in: world.storage)
        let connected = try await attack

        let answeredAt = ContinuousClock.now
        let page = try await Browser.get(callback)
        let health = try await Browser.get("http://127.0.0.1:\(metricsPort)/healthz")
        let answerTime = ContinuousClock.now - answeredAt
        let metrics = try PrometheusText.parse(try await Browser.get("http://127.0.0.1:\(metricsPort)/metrics").body)
        await world.stop(daemon)

        print("half-sent connections: \(connected) connected of 1,500; answers after: \(answerTime)")
        #expect(page.status == 400 && health.status == 200)
        #expect(answerTime < .seconds(5), "the listeners answer at once once the connections are gone")
        for (index, sellerID) in ids.enumerated() {
            #expect(rotationsDuring[index] - rotationsBefore[index] >= 2, "\(sellerID) refreshed during the attack")
            let row = readers.first { $0.sellerID == sellerID }
            #expect((row?.expireTime ?? 0) > readAt, "\(sellerID)'s token was valid at the attack's end")
        }
        let failed = ["transient", "throttled", "configuration", "account_rejected"].reduce(0.0) {
            $0
                + (metrics.value("tokenkeeper_refreshes_total", ["app": "default", "outcome": "failed", "class": $1])
                    ?? 0)
        }
        #expect(failed == 0, "no refresh failed")
        let started = metrics.value("tokenkeeper_refresh_start_delay_seconds_count", [:]) ?? 0
        let onTime = metrics.value("tokenkeeper_refresh_start_delay_seconds_bucket", ["le": "1.0"]) ?? -1
        #expect(started > 0 && onTime == started, "every refresh started within a second of its time")
        let log = daemon.stderr.text
        #expect(!log.contains("Too many open files") && !log.contains("EMFILE"), "\(log.suffix(3000))")
        #expect(log.contains("max_connections=192"), "the callback's cap follows the 1,024 open files")
    }
}

/// Connections that send half a request and then nothing (a slowloris, a
/// port scanner, a broken proxy), from a process of their own: a test
/// process holding 1,500 sockets would race every `Process.run()` of the
/// tests running beside it (Foundation walks the open descriptors).
enum HalfSentConnections {
    /// Opens `count` connections to `port` at once, each sending the start
    /// of a request, holds them for `hold`, then exits (closing them all);
    /// returns how many connected.
    static func hold(_ count: Int, port: Int, for hold: Duration) async throws -> Int {
        let script = """
            import resource, selectors, socket, sys, time
            count, port, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            start = time.monotonic()
            waiting = selectors.DefaultSelector()
            for _ in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                waiting.register(s, selectors.EVENT_WRITE)
            sent = []
            while waiting.get_map() and time.monotonic() - start < hold / 2:
                for key, _ in waiting.select(timeout=0.2):
                    s = key.fileobj
                    waiting.unregister(s)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        try:
                            s.send(b"GET /aliexpress/callback?state=x HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nX-Slow: ")
                            sent.append(s)
                        except OSError:
                            pass
            print(len(sent), flush=True)
            time.sleep(max(0.0, hold - (time.monotonic() - start)))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, "\(count)", "\(port)", "\(Double(hold.components.seconds))"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let (finished, done) = AsyncStream<Void>.makeStream()
        process.terminationHandler = { _ in
            done.yield()
            done.finish()
        }
        try process.run()
        for await _ in finished { break }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0, let connected = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw TestPython.Failure(description: "the half-sent connections failed: \(text.suffix(2000))") }
        return connected
    }
}
