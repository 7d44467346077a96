import AsyncHTTPClient
import Foundation
import IOPGateway
import IOPSimulator
import NIOCore
import NIOHTTP1
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The signing proxy (issue 18) end to end: the real binary with
/// `proxy.listen`, the simulator's business APIs checking the app's
/// signature and the seller's current access token, and the vendor's own
/// SDK (PyPI `lazop-sdk`) as the reader, holding only a client key and
/// secret of its own.
@Suite("Signing proxy end to end", .serialized)
struct ProxyEndToEndTests {
    static let clientKey = "orders-key"
    static let otherKey = "reports-key"

    /// A world whose daemon proxies for two clients: `orders` (every
    /// seller) and `reports` (seller 1001 only).
    struct Scene {
        let world: EndToEndWorld
        let port: Int
        let clientSecret: String
        let otherSecret: String
        let home: String

        init(settings: [String: String] = [:]) async throws {
            world = try await EndToEndWorld(settings: settings)
            port = try LoopbackPort.free()
            var random = SystemRandomNumberGenerator()
            clientSecret = "orders-" + String(random.next() as UInt64, radix: 36) + "-secret-text"
            otherSecret = "reports-" + String(random.next() as UInt64, radix: 36) + "-secret-text"
            let ordersPath = world.root.appendingPathComponent("proxy-orders.secret").path
            let reportsPath = world.root.appendingPathComponent("proxy-reports.secret").path
            for (path, secret) in [(ordersPath, clientSecret), (reportsPath, otherSecret)] {
                guard
                    FileManager.default.createFile(
                        atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
                else { throw CocoaError(.fileWriteUnknown) }
            }
            home = world.root.appendingPathComponent("home").path
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            try world.writeConfig([
                "proxy.listen": "127.0.0.1:\(port)",
                "proxy.clients.orders.key": ProxyEndToEndTests.clientKey,
                "proxy.clients.orders.secret_file": ordersPath,
                "proxy.clients.reports.key": ProxyEndToEndTests.otherKey,
                "proxy.clients.reports.secret_file": reportsPath,
                "proxy.clients.reports.sellers": "[\"1001\"]",
            ])
        }

        var proxyURL: String { "http://127.0.0.1:\(port)/default/rest" }

        /// Starts the daemon and waits until its proxy listens.
        func startDaemon(sourceLocation: SourceLocation = #_sourceLocation) async throws -> TokenKeeperProcess {
            let daemon = try world.startDaemon()
            #expect(
                await eventually(timeout: .seconds(20)) { daemon.stderr.text.contains("proxy listener ready") },
                "\(daemon.stderr.text.suffix(2000))", sourceLocation: sourceLocation)
            return daemon
        }

        /// Imports sellers with tokens the simulator seeded.
        func importSellers(_ ids: [String], lifetime: Duration = .seconds(3600)) async throws {
            var lines: [String] = []
            for id in ids {
                world.simulator.addSeller(sellerID: id, accessTokenLifetime: lifetime)
                let pair = try world.simulator.seedTokens(for: id)
                let object: [String: Any] = [
                    "seller_id": id, "refresh_token": pair.refreshToken.exposedValue,
                    "access_token": pair.accessToken.exposedValue,
                    "expire_time": pair.expireTime.millisecondsSince1970,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                lines.append(String(decoding: data, as: UTF8.self))
            }
            let result = try await world.run(["import", "--file", "-"], stdin: lines.joined(separator: "\n") + "\n")
            #expect(result.exitCode == 0, "\(result.stderr)")
        }

        /// Calls through the vendor's SDK: each call as `{api, seller, params,
        /// method, files}`; returns each answer's JSON body. `clock_offset`
        /// moves the SDK's clock (a stale timestamp).
        func sdk(
            url: String? = nil, key: String = ProxyEndToEndTests.clientKey, secret: String? = nil,
            calls: [[String: Any]], clockOffset: Int = 0
        ) async throws -> [[String: Any]] {
            let input: [String: Any] = [
                "url": url ?? proxyURL, "key": key, "secret": secret ?? clientSecret, "calls": calls,
                "clock_offset": clockOffset,
            ]
            let output = try await TestPython.runDetached(
                Self.sdkScript, input: try JSONSerialization.data(withJSONObject: input),
                environment: ["HOME": home])
            world.record(String(decoding: output, as: UTF8.self))
            return try #require(try JSONSerialization.jsonObject(with: output) as? [[String: Any]])
        }

        static let sdkScript = """
            import json, sys, time
            args = json.load(sys.stdin)
            if args["clock_offset"]:
                real = time.time
                time.time = lambda: real() + args["clock_offset"]
            from lazop_sdk.base import LazopClient, LazopRequest
            client = LazopClient(args["url"], args["key"], args["secret"])
            out = []
            for call in args["calls"]:
                request = LazopRequest(call["api"], call.get("method", "POST"))
                for k, v in call.get("params", {}).items():
                    request.add_api_param(k, v)
                for k, f in call.get("files", {}).items():
                    request.add_file_param(k, (f["filename"], f["content"].encode()))
                response = client.execute(request, call["seller"])
                out.append(response.body)
            print(json.dumps(out))
            """

        func tearDown() async {
            await world.tearDown()
        }
    }

    @Test(
        "a call through the proxy by the vendor's SDK reaches the gateway signed by the app with the seller's current token, and its answer comes back unchanged"
    )
    func sdkCallThroughTheProxy() async throws {
        let scene = try await Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        try await scene.importSellers(["1001", "1002"])
        let daemon = try await scene.startDaemon()

        let call: [String: Any] = [
            "api": "/aliexpress/solution/order/get", "seller": "1001",
            "params": ["order_id": "8123456", "note": "a & b = c+d ü", "empty": ""],
        ]
        let proxied = try await scene.sdk(calls: [
            call, ["api": "/orders/get", "seller": "1002", "method": "GET", "params": ["page": "2"]],
        ])
        // The same SDK calling the gateway directly, as a reader holding the
        // app secret and the token would.
        let token = try #require(world.simulator.issuedTokens(for: "1001").last?.accessToken.exposedValue)
        let direct = try await TestPython.runDetached(
            """
            import json, sys
            from lazop_sdk.base import LazopClient, LazopRequest
            a = json.load(sys.stdin)
            client = LazopClient(a["url"], a["key"], a["secret"])
            request = LazopRequest("/aliexpress/solution/order/get")
            for k, v in a["params"].items(): request.add_api_param(k, v)
            print(json.dumps(client.execute(request, a["token"]).body))
            """,
            input: try JSONSerialization.data(withJSONObject: [
                "url": world.configValues["gateway.url"]!, "key": EndToEndWorld.appKey,
                "secret": world.appSecret.exposedValue, "token": token, "params": call["params"]!,
            ]), environment: ["HOME": scene.home])
        var directBody = try #require(try JSONSerialization.jsonObject(with: direct) as? [String: Any])
        var first = proxied[0]
        #expect(first["code"] as? String == "0", "\(first)")
        let data = try #require(first["data"] as? [String: Any])
        #expect(data["seller_id"] as? String == "1001")
        #expect((data["params"] as? [String: Any])?["order_id"] as? String == "8123456")
        #expect((data["params"] as? [String: Any])?["note"] as? String == "a & b = c+d ü")
        // Unchanged but for the request id the gateway gives every answer
        // (the empty parameter is dropped on the way: the SDKs disagree on signing it).
        first["request_id"] = nil
        directBody["request_id"] = nil
        var directData = try #require(directBody["data"] as? [String: Any])
        var directParams = try #require(directData["params"] as? [String: Any])
        directParams["empty"] = nil
        directData["params"] = directParams
        directBody["data"] = directData
        #expect(NSDictionary(dictionary: first).isEqual(to: directBody), "\(first) vs \(directBody)")
        #expect(proxied[1]["code"] as? String == "0", "the GET call: \(proxied[1])")
        #expect(((proxied[1]["data"] as? [String: Any])?["seller_id"]) as? String == "1002")

        // A file upload passes too.
        let upload = try await scene.sdk(calls: [
            [
                "api": "/image/upload", "seller": "1001", "params": ["album": "main"],
                "files": ["image": ["filename": "shoe.jpg", "content": "not really a jpeg"]],
            ]
        ])
        let files = try #require(((upload[0]["data"] as? [String: Any])?["files"]) as? [[String: Any]])
        #expect(files.first?["filename"] as? String == "shoe.jpg" && files.first?["size"] as? Int == 17, "\(upload)")

        let counters = world.simulator.counters
        #expect(counters.businessCallsServed == 4, "three proxied calls and the direct one")
        #expect(counters.businessCallsRejectedForToken == 0)
        await world.stop(daemon)
        world.expectNoSecretsLeaked(extraSecrets: [scene.clientSecret, scene.otherSecret])
    }

    @Test(
        "refused without a gateway call, each in the gateway's error shape and logged once: a wrong client secret, a stale timestamp, a seller the client may not use, a seller that must authorize again"
    )
    func refusals() async throws {
        let scene = try await Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        try await scene.importSellers(["1001", "1002", "1003"])
        let daemon = try await scene.startDaemon()
        // 1003 must authorize again: its refresh token is revoked, and a refresh finds out.
        try world.simulator.revoke(sellerID: "1003")
        _ = try await world.run(["refresh", "1003"])
        #expect(try await world.run(["list"]).stdout.contains("reauth_required"))

        let before = world.simulator.counters.businessCalls
        let call: [String: Any] = ["api": "/orders/get", "seller": "1001", "params": ["page": "1"]]
        let wrongSecret = try await scene.sdk(secret: "not-the-secret-of-this-client", calls: [call])
        let stale = try await scene.sdk(calls: [call], clockOffset: -3600)
        let notHis = try await scene.sdk(
            key: ProxyEndToEndTests.otherKey, secret: scene.otherSecret,
            calls: [["api": "/orders/get", "seller": "1002"]])
        let reauth = try await scene.sdk(calls: [["api": "/orders/get", "seller": "1003"]])
        let expected = [
            (wrongSecret, "IncompleteSignature", "bad_signature"), (stale, "IllegalTimestamp", "stale_timestamp"),
            (notHis, "SellerNotAllowed", "seller_not_allowed"),
            (reauth, "SellerReauthRequired", "seller_reauth_required"),
        ]
        for (answers, code, _) in expected {
            let answer = answers[0]
            #expect(answer["code"] as? String == code, "\(answer)")
            #expect(
                answer["type"] as? String != nil && answer["message"] as? String != nil
                    && answer["request_id"] as? String != nil, "the gateway's error shape: \(answer)")
        }
        #expect(world.simulator.counters.businessCalls == before, "no call reached the gateway")
        // Allowed: the same client for its own seller.
        let allowed = try await scene.sdk(
            key: ProxyEndToEndTests.otherKey, secret: scene.otherSecret,
            calls: [["api": "/orders/get", "seller": "1001"]])
        #expect(allowed[0]["code"] as? String == "0", "\(allowed)")
        let result = await world.stop(daemon)
        let refusedLines = result.stderr.split(separator: "\n").filter { $0.contains("proxy refused a call") }
        for (_, _, reason) in expected {
            #expect(
                refusedLines.filter { $0.contains("reason=\(reason)") || $0.contains("\"reason\":\"\(reason)\"") }.count
                    == 1, "one line for \(reason): \(refusedLines)")
        }
        #expect(refusedLines.count == expected.count, "\(refusedLines)")
        world.expectNoSecretsLeaked(extraSecrets: [scene.clientSecret, scene.otherSecret])
    }

    @Test(
        "a call with an access token the gateway no longer accepts is retried once after a refresh and succeeds; no refresh token used twice, no refreshes overlapping"
    )
    func retryAfterRefresh() async throws {
        let scene = try await Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        try await scene.importSellers(["1001"])
        let daemon = try await scene.startDaemon()
        let rotationsBefore = world.simulator.rotationsHandedOut(for: "1001").count
        try world.simulator.invalidateAccessToken(for: "1001")
        // Several readers at once with the refused token: one refresh.
        let codes = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<3 {
                group.addTask {
                    try await scene.sdk(calls: [["api": "/orders/get", "seller": "1001"]]).map {
                        "\($0["code"] ?? "none")"
                    }
                }
            }
            var all: [String] = []
            for try await answer in group { all += answer }
            return all
        }
        #expect(codes == ["0", "0", "0"], "\(codes)")
        let counters = world.simulator.counters
        #expect(counters.businessCallsRejectedForToken >= 1, "the old token was refused at least once")
        #expect(world.simulator.rotationsHandedOut(for: "1001").count == rotationsBefore + 1, "one refresh")
        #expect(counters.refreshTokenReuses == 0 && counters.overlappingRefreshes == 0)
        await world.stop(daemon)
        world.expectNoSecretsLeaked(extraSecrets: [scene.clientSecret, scene.otherSecret])
    }

    @Test(
        "under a flood of proxied calls from one client at ten times the app's rate for a minute, every seller with a short-lived token is still refreshed on schedule"
    )
    func floodKeepsRefreshesOnSchedule() async throws {
        let rate = 5.0
        let scene = try await Scene(settings: ["refresh.max_calls_per_second": "\(Int(rate))"])
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        let sellers = (0..<8).map { "40000\($0)" }
        try await scene.importSellers(sellers, lifetime: .seconds(15))
        let daemon = try await scene.startDaemon()
        let startRotations = sellers.map { world.simulator.rotationsHandedOut(for: $0).count }
        let startRequests = world.simulator.counters.requests

        // Calls wait up to a second for the app's budget: a connection for
        // each call in flight, as many readers would have.
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: clientConfiguration)
        let flood = Flood(
            client: client, url: "http://127.0.0.1:\(scene.port)/rest/orders/get", secret: scene.clientSecret)
        let outcomes = await flood.run(
            perSecond: Int(rate * 10), for: .seconds(60), sellers: sellers)
        try await client.shutdown()

        let counters = world.simulator.counters
        let requests = counters.requests - startRequests
        let refreshed = zip(sellers, startRotations).map { world.simulator.rotationsHandedOut(for: $0).count - $1 }
        print(
            "proxy flood: \(outcomes); the gateway saw \(requests) calls in all (app rate \(rate)/s); "
                + "refreshes per seller \(refreshed); refreshes after expiry \(counters.refreshesAfterAccessExpiry)")
        #expect(outcomes.sent >= Int(rate * 10 * 55), "the flood ran: \(outcomes)")
        #expect(outcomes.forwarded > 0 && outcomes.refusedForRate > outcomes.forwarded, "\(outcomes)")
        #expect(counters.refreshesAfterAccessExpiry == 0, "no seller's token expired before its refresh")
        #expect(refreshed.allSatisfy { $0 >= 4 }, "each seller refreshed about every 12 s: \(refreshed)")
        #expect(Double(requests) <= rate * 62, "the gateway saw no more than the app's rate: \(requests) in a minute")
        #expect(counters.refreshTokenReuses == 0 && counters.overlappingRefreshes == 0)
        await world.stop(daemon)
        world.expectNoSecretsLeaked(extraSecrets: [scene.clientSecret, scene.otherSecret])
    }
}

/// A client flooding the proxy with signed calls at a steady pace.
struct Flood: Sendable {
    let client: HTTPClient
    let url: String
    let secret: String

    struct Outcomes: Sendable, CustomStringConvertible {
        var sent = 0
        var forwarded = 0
        var refusedForRate = 0
        var other: [String: Int] = [:]

        var description: String {
            "sent \(sent), forwarded \(forwarded), refused for rate \(refusedForRate), other \(other)"
        }
    }

    func run(perSecond: Int, for span: Duration, sellers: [String]) async -> Outcomes {
        let interval = Duration.milliseconds(1000 / Int64(perSecond))
        let calls = Int(span.components.seconds) * perSecond
        let clock = ContinuousClock()
        let start = clock.now
        return await withTaskGroup(of: String.self) { group in
            for index in 0..<calls {
                try? await clock.sleep(until: start + interval * index)
                group.addTask { await call(seller: sellers[index % sellers.count]) }
            }
            var outcomes = Outcomes()
            for await code in group {
                outcomes.sent += 1
                switch code {
                case "0": outcomes.forwarded += 1
                case "ApiCallLimit": outcomes.refusedForRate += 1
                default: outcomes.other[code, default: 0] += 1
                }
            }
            return outcomes
        }
    }

    private func call(seller: String) async -> String {
        let call = SignedCall(
            url: url, key: ProxyEndToEndTests.clientKey, secret: secret, signedPath: "/orders/get",
            parameters: ["access_token": seller, "page": "1"])
        do {
            return try await call.send(with: client).code ?? "none"
        } catch {
            return "error: \(String(describing: error).prefix(80))"
        }
    }
}

/// One call signed as the vendor's SDKs sign (``IOPSignature``), made with
/// AsyncHTTPClient: for what the SDK cannot do (a `/sync` call, a Unix
/// socket, a flood).
struct SignedCall: Sendable {
    var url: String
    var key: String
    var secret: String
    /// The API path the signature covers; "" for `/sync`.
    var signedPath: String
    var parameters: [String: String]
    var method = "POST"

    struct Answer: Sendable {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]

        var json: [String: any Sendable]? {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: any Sendable]
        }
        var code: String? { json?["code"] as? String }
    }

    func send(with client: HTTPClient, timestamp: Date = Date()) async throws -> Answer {
        var parameters = parameters
        parameters["app_key"] = key
        parameters["sign_method"] = "sha256"
        parameters["timestamp"] = String(Int64(timestamp.timeIntervalSince1970 * 1000))
        parameters["sign"] = IOPSignature.sign(apiPath: signedPath, parameters: parameters, secret: secret)
        let form = IOPForm(
            fields: parameters.sorted { $0.key < $1.key }.map { IOPForm.Field(name: $0.key, value: $0.value) })
        let (contentType, body) = form.encoded(boundary: "")
        var request: HTTPClientRequest
        if method == "GET" {
            request = HTTPClientRequest(url: url + "?" + String(decoding: body, as: UTF8.self))
        } else {
            request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await client.execute(request, timeout: .seconds(10))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return Answer(status: Int(response.status.code), headers: headers, body: Array(buffer: bytes))
    }
}
