import Foundation
import IOPSimulator
import TokenKeeperCore

extension Benchmark {
    /// Section 7: what the signing proxy (issue 18) adds to a reader's call.
    /// The vendor's own SDK (PyPI `lazop-sdk`) calls a business API of the
    /// simulator directly, signed by the app with the seller's access token,
    /// and through the proxy, signed by a client of the proxy with the seller
    /// id: first one call at a time (each call's latency), then from
    /// ``ProxyDriver/threads`` threads for a few seconds (calls per second).
    func measureProxy() async throws {
        let python = ProxyDriver.python
        guard FileManager.default.isExecutableFile(atPath: python) else {
            report.note("skipped: no \(python) (run scripts/test once, or set TOKENKEEPER_TEST_PYTHON)")
            return
        }
        try await withRig("proxy", behavior: { $0.recordsIssuedTokens = true }) { rig in
            // No app budget: the figures are the proxy's own cost, not a throttle's.
            try rig.writeConfig(DaemonSettings(maxCallsPerSecond: 0))
            let client = try ProxyDriver.Client(rig: rig, port: try await MetricsEndpoint.free().port)
            try client.appendConfig(to: rig.configPath)
            // Tokens that live a day: no refresh changes them while the driver runs.
            let seeded = try rig.seed(
                SellerBatch(count: ProxyDriver.sellers, accessTokenLifetime: .seconds(86_400), withAccessToken: true),
                file: "sellers.jsonl")
            try await rig.importFile(seeded.path)
            let outcome = try await withDaemon(rig) { _, _ -> ProxyDriver.Outcome? in
                guard try await rig.waitForDaemonLog("proxy listener ready", timeout: .seconds(30)) != nil else {
                    throw ProxyDriver.Failure(
                        description: "the proxy listener never came up:\n\(rig.logTail("daemon"))")
                }
                let driver = ProxyDriver(rig: rig, client: client, sellers: seeded.sellers, calls: options.proxyCalls)
                return try await driver.run()
            }
            guard let outcome else {
                report.note("skipped: \(python) has no lazop_sdk (run scripts/test once)")
                return
            }
            report.note(
                "the SDK as shipped, the same on both sides: a new connection per call (requests.post, no Session)")
            report.note(
                "\(Figure.format(options.proxyCalls)) calls each way one at a time, direct and proxied alternating, "
                    + "after \(ProxyDriver.warmUp) warm-up calls each; \(ProxyDriver.sellers) sellers; "
                    + "driver, daemon and simulator share \(ProcessInfo.processInfo.activeProcessorCount) cores")
            let counters = rig.simulator.counters
            report.record(proxyFigures(outcome, served: counters.businessCallsServed))
            report.record(integrity(counters))
        }
    }

    /// - Parameter served: The business calls the gateway answered with success, as it counted them.
    private func proxyFigures(_ outcome: ProxyDriver.Outcome, served: Int) -> [Figure] {
        let (direct, proxied) = (outcome.direct, outcome.proxied)
        func milliseconds(_ name: String, _ value: Double?) -> Figure {
            Figure(name: name, value: value, unit: " ms", decimals: 2)
        }
        func overhead(_ fraction: Double) -> Double? {
            guard let through = proxied.percentile(fraction), let around = direct.percentile(fraction) else {
                return nil
            }
            return through - around
        }
        func rate(_ name: String, _ side: ProxyDriver.Side) -> Figure {
            Figure(
                name: "\(name): calls/s, \(ProxyDriver.threads) threads", value: side.perSecond, unit: "/s",
                detail: "(\(Figure.format(side.rateCalls)) in \(Figure.format(side.rateSeconds, decimals: 2)) s)")
        }
        let made = 2 * (ProxyDriver.warmUp + direct.milliseconds.count) + direct.rateCalls + proxied.rateCalls
        var detail = ["of \(Figure.format(made)) calls; the gateway served \(Figure.format(served))"]
        for (name, side) in [("direct", direct), ("proxied", proxied)] {
            if let code = side.firstError { detail.append("\(name): \(side.errors), the first \(code)") }
        }
        return [
            milliseconds("direct: p50 call", direct.percentile(0.5)),
            milliseconds("direct: p99 call", direct.percentile(0.99)),
            milliseconds("proxied: p50 call", proxied.percentile(0.5)),
            milliseconds("proxied: p99 call", proxied.percentile(0.99)),
            milliseconds("proxy overhead: p50 (proxied − direct)", overhead(0.5)),
            milliseconds("proxy overhead: p99 (proxied − direct)", overhead(0.99)),
            rate("direct", direct),
            rate("proxied", proxied),
            Figure(
                name: "calls answered with an error", value: Double(direct.errors + proxied.errors), target: .equal(0),
                detail: "(\(detail.joined(separator: "; ")))"),
        ]
    }
}

/// The Python program that calls with the vendor's SDK, and what it measured.
/// Its input (the keys, secrets and tokens) goes in a file of mode 0600, never
/// on its command line; its output holds only timings, counts and error codes.
struct ProxyDriver {
    /// A client of the proxy: its key, its secret (in a file of mode 0600, as
    /// `proxy.clients.<name>.secret_file` must be) and where the proxy listens.
    struct Client {
        static let name = "bench"
        static let key = "bench-client-key"
        let secret: Secret
        let secretFile: String
        let port: Int

        init(rig: Rig, port: Int) throws {
            var generator = SystemRandomNumberGenerator()
            let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
            let text = (0..<32).map { _ in letters.randomElement(using: &generator)! }
            secret = Secret(String(decoding: text, as: UTF8.self))
            secretFile = rig.directory + "/proxy-client.secret"
            try ProxyDriver.writePrivately(Data(secret.exposedValue.utf8), to: secretFile)
            self.port = port
        }

        /// Adds `proxy:` to the configuration the rig wrote.
        func appendConfig(to path: String) throws {
            let yaml = """
                proxy:
                  listen: "127.0.0.1:\(port)"
                  clients:
                    \(Self.name):
                      key: "\(Self.key)"
                      secret_file: "\(secretFile)"

                """
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(yaml.utf8))
        }

        /// The single app of the rig's configuration is named `default`.
        var url: String { "http://127.0.0.1:\(port)/default/rest" }
    }

    /// One way of calling, as the driver measured it.
    struct Side: Decodable {
        /// Each sequential call's time, milliseconds, in the order made.
        var milliseconds: [Double]
        /// Calls whose answer's `code` was not "0" (or that raised), and the first one's code.
        var errors: Int
        var firstError: String?
        /// Calls finished by the threads, in how long.
        var rateCalls: Int
        var rateSeconds: Double

        var perSecond: Double { rateSeconds > 0 ? Double(rateCalls) / rateSeconds : 0 }

        func percentile(_ fraction: Double) -> Double? {
            guard !milliseconds.isEmpty else { return nil }
            let sorted = milliseconds.sorted()
            return sorted[min(sorted.count - 1, Int(fraction * Double(sorted.count)))]
        }
    }

    struct Outcome: Decodable {
        var direct: Side
        var proxied: Side
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static let sellers = 4
    static let warmUp = 100
    static let threads = 8
    static let threadSeconds = 5.0
    /// A business API of the simulator: it checks the signature and the access token, and echoes.
    static let api = "/orders/get"
    /// The driver's exit status when the SDK cannot be imported.
    static let noSDK: Int32 = 3

    /// `$TOKENKEEPER_TEST_PYTHON`, else the virtual environment scripts/test fills.
    static var python: String {
        if let path = ProcessInfo.processInfo.environment["TOKENKEEPER_TEST_PYTHON"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/test-python/bin/python3").path
    }

    let rig: Rig
    let client: Client
    let sellers: Range<Int>
    let calls: Int

    /// Runs the driver to its end.
    /// - Returns: What it measured; nil when the SDK is not installed.
    func run() async throws -> Outcome? {
        // Direct calls use each seller's access token as the gateway issued it.
        let accessTokens = try sellers.map { index in
            guard let pair = rig.simulator.issuedTokens(for: Rig.sellerID(index)).last else {
                throw Failure(description: "the simulator holds no token of seller \(Rig.sellerID(index))")
            }
            return pair.accessToken.exposedValue
        }
        let input: [String: Any] = [
            "api": Self.api, "calls": calls, "warm_up": Self.warmUp, "threads": Self.threads,
            "thread_seconds": Self.threadSeconds,
            "direct": [
                "url": rig.simulator.baseURL!, "key": Rig.appKey, "secret": rig.secret.exposedValue,
                "tokens": accessTokens,
            ],
            "proxied": [
                "url": client.url, "key": Client.key, "secret": client.secret.exposedValue,
                "tokens": sellers.map(Rig.sellerID),
            ],
        ]
        let inputPath = rig.directory + "/driver-input.json"
        let outputPath = rig.directory + "/driver-output.json"
        try Self.writePrivately(try JSONSerialization.data(withJSONObject: input), to: inputPath)
        defer { try? FileManager.default.removeItem(atPath: inputPath) }
        // The SDK makes ~/logs when imported and logs failed calls there, URL and all.
        let home = rig.directory + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = home
        let driver = try ChildProcess(
            executable: Self.python, arguments: ["-c", Self.script, inputPath, outputPath], environment: environment,
            logFile: rig.directory + "/driver.log")
        let exit = try await driver.waitForExit()
        if exit.status == Self.noSDK { return nil }
        guard exit.succeeded else {
            throw Failure(description: "the SDK driver exited with \(exit.status):\n\(rig.logTail("driver"))")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Outcome.self, from: Data(contentsOf: URL(fileURLWithPath: outputPath)))
    }

    static func writePrivately(_ data: Data, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600])
        else { throw POSIXError(.EACCES) }
    }

    /// Sequential calls alternate direct and proxied, so that whatever drifts
    /// while they run (the daemon's timers, the CPU's clock) weighs on both alike.
    static let script = """
        import json, sys, threading, time
        try:
            from lazop_sdk.base import LazopClient, LazopRequest
        except ImportError:
            sys.exit(\(noSDK))

        with open(sys.argv[1]) as f:
            args = json.load(f)

        class Side:
            def __init__(self, side):
                self.client = LazopClient(side["url"], side["key"], side["secret"])
                self.tokens = side["tokens"]
                self.milliseconds = []
                self.errors = 0
                self.first_error = None
                self.lock = threading.Lock()

            def call(self, number):
                request = LazopRequest(args["api"])
                request.add_api_param("page", str(number % 50 + 1))
                started = time.perf_counter()
                try:
                    code = self.client.execute(request, self.tokens[number % len(self.tokens)]).code
                except Exception as error:
                    code = type(error).__name__
                elapsed = time.perf_counter() - started
                if code != "0":
                    with self.lock:
                        self.errors += 1
                        if self.first_error is None:
                            self.first_error = str(code)
                return elapsed

            def rate(self):
                threads = args["threads"]
                counts = [0] * threads
                deadline = time.perf_counter() + args["thread_seconds"]
                def work(thread):
                    number = thread
                    while time.perf_counter() < deadline:
                        self.call(number)
                        counts[thread] += 1
                        number += threads
                started = time.perf_counter()
                workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
                return sum(counts), time.perf_counter() - started

        direct, proxied = Side(args["direct"]), Side(args["proxied"])
        for number in range(args["warm_up"]):
            direct.call(number)
            proxied.call(number)
        for number in range(args["calls"]):
            direct.milliseconds.append(direct.call(number) * 1000)
            proxied.milliseconds.append(proxied.call(number) * 1000)
        out = {}
        for name, side in (("direct", direct), ("proxied", proxied)):
            calls, seconds = side.rate()
            out[name] = {
                "milliseconds": side.milliseconds, "errors": side.errors, "first_error": side.first_error,
                "rate_calls": calls, "rate_seconds": seconds,
            }
        with open(sys.argv[2], "w") as f:
            json.dump(out, f)
        """
}
