import AsyncHTTPClient
import Foundation
import IOPSimulator
import NIOCore
import NIOHTTP1
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// The signing proxy as an operator runs it (issue 18): reloads that add
/// and revoke clients, a Unix socket, `/sync`, the day's budget across a
/// restart, Lazada's endpoint per country, and what /metrics says.
@Suite("Signing proxy operations end to end", .serialized)
struct ProxyOperationsEndToEndTests {
    typealias Scene = ProxyEndToEndTests.Scene

    static func waitUntilListening(_ daemon: TokenKeeperProcess) async -> Bool {
        await eventually(timeout: .seconds(20)) { daemon.stderr.text.contains("proxy listener ready") }
    }

    @Test("a reload revokes a client and adds another; a call in flight as the reload lands is answered")
    func reloadRevokesAndAdds() async throws {
        let scene = try await Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        try await scene.importSellers(["1001"])
        let daemon = try await scene.startDaemon()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { Task { try? await client.shutdown() } }
        let orders = SignedCall(
            url: scene.proxyURL + "/orders/get", key: ProxyEndToEndTests.clientKey, secret: scene.clientSecret,
            signedPath: "/orders/get", parameters: ["access_token": "1001"])
        #expect(try await orders.send(with: client).code == "0")

        // A reload with a client whose secret is missing is refused whole: nothing changes.
        try world.writeConfig([
            "proxy.clients.broken.key": "broken-key",
            "proxy.clients.broken.secret_file": world.root.appendingPathComponent("missing.secret").path,
        ])
        daemon.signal(SIGHUP)
        #expect(await eventually(timeout: .seconds(10)) { daemon.stderr.text.contains("reload refused") })
        #expect(try await orders.send(with: client).code == "0", "the running clients still serve")
        try world.writeConfig([:], removing: ["proxy.clients.broken."])

        // The gateway answers slowly; a call goes out, and the reload removes its client meanwhile.
        world.simulator.updateBehavior { $0.responseLatency = .seconds(2) }
        let reached = world.simulator.counters.businessCalls
        let inFlight = Task { try await orders.send(with: client) }
        #expect(
            await eventually(timeout: .seconds(5)) { world.simulator.counters.businessCalls > reached },
            "the call reached the gateway")
        let newSecret = "audit-" + UUID().uuidString
        let newPath = world.root.appendingPathComponent("proxy-audit.secret").path
        _ = FileManager.default.createFile(
            atPath: newPath, contents: Data(newSecret.utf8), attributes: [.posixPermissions: 0o600])
        try world.writeConfig(
            ["proxy.clients.audit.key": "audit-key", "proxy.clients.audit.secret_file": newPath],
            removing: ["proxy.clients.orders."])
        daemon.signal(SIGHUP)
        #expect(await eventually(timeout: .seconds(10)) { daemon.stderr.text.contains("reloaded the proxy's clients") })
        let answered = try await inFlight.value
        #expect(
            answered.code == "0", "the call in flight is answered: \(String(decoding: answered.body, as: UTF8.self))")
        world.simulator.updateBehavior { $0.responseLatency = .zero }

        let revoked = try await orders.send(with: client)
        #expect(revoked.code == "InvalidAppKey", "\(String(decoding: revoked.body, as: UTF8.self))")
        #expect(revoked.headers["x-tokenkeeper-refused"] == "InvalidAppKey")
        var audit = orders
        audit.key = "audit-key"
        audit.secret = newSecret
        #expect(try await audit.send(with: client).code == "0", "the client added by the reload")
        await world.stop(daemon)
        world.expectNoSecretsLeaked(extraSecrets: [scene.clientSecret, scene.otherSecret, newSecret])
    }

    @Test(
        "a Unix socket with its mode; /sync calls; and /metrics counts calls by client, app and outcome as Prometheus parses them"
    )
    func unixSocketSyncAndMetrics() async throws {
        let scene = try await Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        let socket = world.root.appendingPathComponent("proxy.sock").path
        let metricsPort = try freePort()
        let group = try #require(getgrgid(getgid())).pointee.gr_name.map { String(cString: $0) } ?? ""
        try world.writeConfig([
            "proxy.listen": "unix:\(socket)", "proxy.socket_mode": "0600", "proxy.socket_group": group,
            "metrics.listen": "127.0.0.1:\(metricsPort)",
        ])
        try await scene.importSellers(["1001"])
        // A socket left by an earlier run is replaced.
        let stale = try UnixListeningSocket(path: socket)
        stale.close()
        let daemon = try world.startDaemon()
        #expect(await Self.waitUntilListening(daemon), "\(daemon.stderr.text.suffix(2000))")
        let socketAttributes = try FileManager.default.attributesOfItem(atPath: socket)
        let mode = (socketAttributes[.posixPermissions] as? NSNumber)?.intValue ?? 0
        #expect(mode == 0o600, "mode \(String(mode, radix: 8))")
        #expect(
            (socketAttributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value == getgid(), "the socket's group")

        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { Task { try? await client.shutdown() } }
        let encoded = socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? socket
        let sync = SignedCall(
            url: "http+unix://\(encoded)/default/sync", key: ProxyEndToEndTests.clientKey,
            secret: scene.clientSecret, signedPath: "",
            parameters: ["session": "1001", "method": "aliexpress.solution.order.get", "order_id": "9"])
        let answer = try await sync.send(with: client)
        #expect(answer.code == "0", "\(String(decoding: answer.body, as: UTF8.self))")
        let data = answer.json?["data"] as? [String: any Sendable]
        #expect(data?["api"] as? String == "aliexpress.solution.order.get")
        #expect(data?["seller_id"] as? String == "1001")
        var bad = sync
        bad.secret = "a-secret-that-is-wrong"
        #expect(try await bad.send(with: client).code == "IncompleteSignature")

        let page = try await Browser.get("http://127.0.0.1:\(metricsPort)/metrics")
        #expect(
            page.body.contains(
                "tokenkeeper_proxy_calls_total{client=\"orders\",app=\"default\",outcome=\"forwarded\"} 1"),
            "\(page.body.split(separator: "\n").filter { $0.contains("proxy") })")
        #expect(
            page.body.contains("tokenkeeper_proxy_calls_total{client=\"orders\",app=\"\",outcome=\"bad_signature\"} 1")
                || page.body.contains("outcome=\"bad_signature\"} 1"))
        #expect(
            page.body.contains("tokenkeeper_proxy_call_duration_seconds_count{client=\"orders\",app=\"default\"} 1"))
        #expect(try await PromTool.checkMetrics(page.body) == "", "promtool check metrics")
        await world.stop(daemon)
        world.expectNoSecretsLeaked(extraSecrets: [scene.clientSecret, scene.otherSecret])
    }

    @Test(
        "two apps through one proxy: a Lazada cross-border account's sellers each reach their country's endpoint, found by any of their seller ids"
    )
    func lazadaCountries() async throws {
        let scene = try await SeveralAppsEndToEndTests.Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        let port = try freePort()
        let secret = "orders-" + UUID().uuidString
        let secretPath = world.root.appendingPathComponent("proxy-orders.secret").path
        _ = FileManager.default.createFile(
            atPath: secretPath, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
        let lazadaURL = try #require(world.configValues["apps.lazada_sg.gateway.url"])
        try world.writeConfig([
            "proxy.listen": "127.0.0.1:\(port)", "proxy.clients.orders.key": "orders-key",
            "proxy.clients.orders.secret_file": secretPath,
            "apps.lazada_sg.api_urls.sg": lazadaURL,
            // Nothing listens there: a call routed to Thailand's endpoint fails to connect.
            "apps.lazada_sg.api_urls.th": "http://127.0.0.1:\(try freePort())/rest",
        ])
        let ventures = SeveralAppsEndToEndTests.crossBorder
        scene.lazada.addSeller(.crossBorderAccount(ventures: ventures, accessTokenLifetime: .seconds(3600)))
        world.simulator.addSeller(sellerID: "1001", accessTokenLifetime: .seconds(3600))
        let lines = [
            try scene.importLine("lazada_sg", ventures[0].sellerID, on: scene.lazada),
            try scene.importLine("ae", "1001", on: world.simulator),
        ]
        #expect(
            try await world.run(["import", "--file", "-"], stdin: lines.joined(separator: "\n") + "\n").exitCode == 0)
        // An import carries no countries: the account's sellers are learned at its first refresh.
        #expect(try await world.run(["refresh", "--app", "lazada_sg", ventures[0].sellerID]).exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(await Self.waitUntilListening(daemon))
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { Task { try? await client.shutdown() } }
        func call(_ app: String, _ seller: String) async throws -> SignedCall.Answer {
            try await SignedCall(
                url: "http://127.0.0.1:\(port)/\(app)/rest/orders/get", key: "orders-key", secret: secret,
                signedPath: "/orders/get", parameters: ["access_token": seller]
            ).send(with: client)
        }
        let singapore = try await call("lazada_sg", ventures[0].sellerID)
        #expect(singapore.code == "0", "\(String(decoding: singapore.body, as: UTF8.self))")
        #expect(scene.lazada.counters.businessCallsServed == 1)
        let thailand = try await call("lazada_sg", ventures[1].sellerID)
        #expect(
            thailand.code == "GatewayUnavailable", "routed to th: \(String(decoding: thailand.body, as: UTF8.self))")
        let malaysia = try await call("lazada_sg", ventures[2].sellerID)
        #expect(malaysia.code == "NoApiUrl", "\(String(decoding: malaysia.body, as: UTF8.self))")
        let aliexpress = try await call("ae", "1001")
        #expect(aliexpress.code == "0" && world.simulator.counters.businessCallsServed == 1)
        let plain = try await SignedCall(
            url: "http://127.0.0.1:\(port)/rest/orders/get", key: "orders-key", secret: secret,
            signedPath: "/orders/get",
            parameters: ["access_token": "1001"]
        ).send(with: client)
        #expect(plain.code == "InvalidApiPath", "a client of two apps names the app")
        await world.stop(daemon)
        world.expectNoSecretsLeaked(in: [], extraSecrets: scene.secrets + [secret])
    }

    @Test(
        "as an attacker would: a body over the limit, a malformed multipart body, a path with control characters, a key of no client; each refused in the gateway's shape, none reaching the gateway, the log escaped"
    )
    func strangersAreRefused() async throws {
        let scene = try await Scene(settings: [
            "proxy.max_request_bytes": "4096", "proxy.max_concurrent_calls": "2",
        ])
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        try await scene.importSellers(["1001"])
        let daemon = try await scene.startDaemon()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { Task { try? await client.shutdown() } }
        func post(_ path: String, contentType: String, body: [UInt8]) async throws -> (Int, String?, String) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(scene.port)\(path)")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(10))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            return (Int(response.status.code), response.headers.first(name: "X-Tokenkeeper-Refused"), text)
        }
        let huge = try await post(
            "/default/rest/orders/get", contentType: "application/x-www-form-urlencoded",
            body: Array(repeating: UInt8(ascii: "a"), count: 100_000))
        #expect(huge.0 == 413 && huge.1 == "RequestTooLarge", "\(huge)")
        let multipart = try await post(
            "/default/rest/orders/get", contentType: "multipart/form-data; boundary=XYZ",
            body: Array("--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated".utf8))
        #expect(
            multipart.1 == "InvalidParameter" && multipart.2.contains("\"code\":\"InvalidParameter\""), "\(multipart)")
        let controls = try await post(
            "/default/rest/a%0Aforged%20line%1B[31m", contentType: "application/x-www-form-urlencoded", body: [])
        #expect(controls.0 == 404 && controls.1 == "InvalidApiPath", "\(controls)")
        let stranger = try await post(
            "/default/rest/orders/get", contentType: "application/x-www-form-urlencoded",
            body: Array("app_key=who%0Ais&sign=x&sign_method=sha256&timestamp=1&access_token=1001".utf8))
        #expect(stranger.1 == "InvalidAppKey", "\(stranger)")
        // The token APIs are tokenkeeper's own, by path or by /sync's method.
        let refresh = SignedCall(
            url: scene.proxyURL + "/auth/token/refresh", key: ProxyEndToEndTests.clientKey,
            secret: scene.clientSecret, signedPath: "/auth/token/refresh",
            parameters: ["access_token": "1001", "refresh_token": "50001abc"])
        let tokenCall = try await refresh.send(with: client)
        #expect(tokenCall.code == "ApiNotAllowed", "\(String(decoding: tokenCall.body, as: UTF8.self))")
        let create = SignedCall(
            url: "http://127.0.0.1:\(scene.port)/default/sync", key: ProxyEndToEndTests.clientKey,
            secret: scene.clientSecret, signedPath: "", parameters: ["session": "1001", "method": "auth.token.create"])
        #expect(try await create.send(with: client).code == "ApiNotAllowed")
        // What a reader half-way moved sends where the seller id goes may be a token: never logged.
        let tokenShaped = "50000" + String(repeating: "x", count: 40) + "tail"
        let unknown = SignedCall(
            url: scene.proxyURL + "/orders/get", key: ProxyEndToEndTests.clientKey, secret: scene.clientSecret,
            signedPath: "/orders/get", parameters: ["access_token": tokenShaped])
        #expect(try await unknown.send(with: client).code == "SellerNotFound")
        #expect(world.simulator.counters.businessCalls == 0, "nothing reached the gateway")

        // At most proxy.max_concurrent_calls at once: the next is refused before its body is read.
        world.simulator.updateBehavior { $0.responseLatency = .milliseconds(1500) }
        let known = SignedCall(
            url: scene.proxyURL + "/orders/get", key: ProxyEndToEndTests.clientKey, secret: scene.clientSecret,
            signedPath: "/orders/get", parameters: ["access_token": "1001"])
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<3 { group.addTask { try await known.send(with: client).status } }
            var all: [Int] = []
            for try await status in group { all.append(status) }
            return all.sorted()
        }
        #expect(statuses == [200, 200, 503], "two at once, the third refused: \(statuses)")
        world.simulator.updateBehavior { $0.responseLatency = .zero }
        let result = await world.stop(daemon)
        #expect(!result.stderr.contains(tokenShaped), "the unknown seller id is not logged")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.filter { $0.contains("proxy refused a call") }.count == 8, "\(lines.suffix(10))")
        #expect(
            !lines.contains { $0.hasPrefix("forged") } && !result.stderr.contains("\u{1B}"),
            "no forged line, no raw escape")
    }

    @Test(
        "proxy-client new: a key and a secret that check-config and the proxy take as printed; a bad name is a usage error, an existing secret file is never overwritten"
    )
    func newClientAsPrinted() async throws {
        let scene = try await Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        #expect(try await TokenKeeperProcess.run(["proxy-client", "new", "Bad Name"]).exitCode == 64)
        let path = world.root.appendingPathComponent("proxy-billing.secret").path
        let made = try await TokenKeeperProcess.run(["proxy-client", "new", "billing", "--secret-file", path])
        #expect(made.exitCode == 0, "\(made.stderr)")
        let secret = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.count >= 32 && !made.stdout.contains(secret), "the secret is in the file only")
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let again = try await TokenKeeperProcess.run(["proxy-client", "new", "billing", "--secret-file", path])
        #expect(again.exitCode == 1 && again.stderr.contains("never overwritten"), "\(again.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains(secret))
        let keyLine = try #require(made.stdout.split(separator: "\n").first { $0.contains("key: billing-") })
        let key = String(keyLine.split(separator: ":").last!.trimmingCharacters(in: .whitespaces))
        try world.writeConfig(["proxy.clients.billing.key": key, "proxy.clients.billing.secret_file": path])
        let check = try await world.run(["check-config"])
        #expect(check.exitCode == 0, "\(check.stderr)")
        #expect(
            check.stdout.contains("client billing: key \(key), secret fingerprint \(Secret(secret).fingerprint)"),
            "\(check.stdout)")
        try await scene.importSellers(["1001"])
        let daemon = try await scene.startDaemon()
        let answer = try await scene.sdk(key: key, secret: secret, calls: [["api": "/orders/get", "seller": "1001"]])
        #expect(answer.first?["code"] as? String == "0", "\(answer)")
        await world.stop(daemon)
        world.expectNoSecretsLeaked(extraSecrets: [scene.clientSecret, scene.otherSecret, secret])
    }

    @Test(
        "a throttling answer pauses the app's proxied calls and goes back as it came; a client over its own rate is refused; a gateway slower than proxy.timeout_seconds is GatewayUnavailable"
    )
    func throttlingRatesAndTimeouts() async throws {
        let scene = try await Scene(settings: [
            "proxy.timeout_seconds": "1", "proxy.clients.reports.max_calls_per_second": "1",
        ])
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        world.simulator.updateBehavior { $0.throttleBanSeconds = 3 }
        try await scene.importSellers(["1001"])
        let daemon = try await scene.startDaemon()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { Task { try? await client.shutdown() } }
        let orders = SignedCall(
            url: scene.proxyURL + "/orders/get", key: ProxyEndToEndTests.clientKey, secret: scene.clientSecret,
            signedPath: "/orders/get", parameters: ["access_token": "1001"])
        #expect(try await orders.send(with: client).code == "0")

        world.simulator.injectFaults(.throttled)
        let throttled = try await orders.send(with: client)
        #expect(
            throttled.code == "ApiCallLimit" && throttled.headers["x-tokenkeeper-refused"] == nil, "the gateway's own")
        let arrived = world.simulator.counters.requests
        let paused = try await orders.send(with: client)
        #expect(paused.code == "ApiCallLimit" && paused.headers["x-tokenkeeper-refused"] == "ApiCallLimit")
        #expect(world.simulator.counters.requests == arrived, "the pause holds the call back")
        #expect(
            await eventually(timeout: .seconds(10)) { (try? await orders.send(with: client).code) == "0" },
            "calls pass again once the ban is over")

        var reports = orders
        reports.key = ProxyEndToEndTests.otherKey
        reports.secret = scene.otherSecret
        let first = try await reports.send(with: client)
        let second = try await reports.send(with: client)
        #expect(first.code == "0" && second.code == "ApiCallLimit", "\(String(decoding: second.body, as: UTF8.self))")
        #expect(String(decoding: second.body, as: UTF8.self).contains("max_calls_per_second"))

        world.simulator.updateBehavior { $0.responseLatency = .seconds(3) }
        let started = ContinuousClock.now
        let slow = try await orders.send(with: client)
        #expect(
            slow.code == "GatewayUnavailable" && slow.status == 502, "\(String(decoding: slow.body, as: UTF8.self))")
        #expect(ContinuousClock.now - started < .seconds(3), "answered at the proxy's timeout, not the gateway's pace")
        world.simulator.updateBehavior { $0.responseLatency = .zero }
        let result = await world.stop(daemon)
        #expect(result.stderr.contains("the gateway throttles this app: proxied calls paused"))
    }

    @Test(
        "proxy.app_daily_calls: calls past the day's count are refused, and a restart does not give the day's calls again"
    )
    func dailyCallsSurviveARestart() async throws {
        let scene = try await Scene(settings: ["proxy.app_daily_calls": "3"])
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        try await scene.importSellers(["1001"])
        let call: [String: Any] = ["api": "/orders/get", "seller": "1001"]
        var daemon = try await scene.startDaemon()
        let first = try await scene.sdk(calls: [call, call])
        #expect(first.map { $0["code"] as? String } == ["0", "0"])
        await world.stop(daemon)
        daemon = try await scene.startDaemon()
        let after = try await scene.sdk(calls: [call, call])
        #expect(after.map { $0["code"] as? String } == ["0", "AppCallLimit"], "\(after)")
        #expect(world.simulator.counters.businessCallsServed == 3)
        await world.stop(daemon)
    }
}

/// A listening Unix socket, as a crashed daemon leaves one behind.
struct UnixListeningSocket {
    let descriptor: Int32

    init(path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.enumerated() where index < bytes.count - 1 { bytes[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(descriptor, 1) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    func close() {
        _ = Glibc.close(descriptor)
    }
}

// Several daemons on one PostgreSQL (issue 18): any node's proxy serves any
// seller, and a refused token is refreshed once whichever node holds it.
// Part of the PostgreSQL suite, which is serialized: these tests start one
// PostgreSQL server at a time.
extension PostgresEndToEndTests {
    @Test(
        "two nodes: each node's proxy serves every seller; a token the gateway refuses through one node is refreshed once and the call retried"
    )
    func anyNodeServesAnySeller() async throws {
        try await Self.withCluster(settings: Self.settings) { cluster in
            let world = cluster.world
            let secret = "orders-" + UUID().uuidString
            let secretPath = world.root.appendingPathComponent("proxy-orders.secret").path
            _ = FileManager.default.createFile(
                atPath: secretPath, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
            let ports = [try freePort(), try freePort()]
            try world.writeConfig([
                "proxy.listen": "127.0.0.1:\(ports[0])", "proxy.clients.orders.key": "orders-key",
                "proxy.clients.orders.secret_file": secretPath,
            ])
            let (ids, jsonl) = try world.seedSellers(4, accessTokenLifetime: .seconds(3600))
            #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
            let daemons = try ports.map {
                try world.startDaemon(environment: ["TOKENKEEPER_PROXY_LISTEN": "127.0.0.1:\($0)"])
            }
            for daemon in daemons {
                #expect(await ProxyOperationsEndToEndTests.waitUntilListening(daemon))
            }
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            func call(_ port: Int, _ seller: String) async throws -> String? {
                try await SignedCall(
                    url: "http://127.0.0.1:\(port)/rest/orders/get", key: "orders-key", secret: secret,
                    signedPath: "/orders/get", parameters: ["access_token": seller]
                ).send(with: client).code
            }
            for port in ports {
                for id in ids {
                    #expect(try await call(port, id) == "0", "node on \(port), seller \(id)")
                }
            }
            let before = world.simulator.rotationsHandedOut(for: ids[0]).count
            try world.simulator.invalidateAccessToken(for: ids[0])
            #expect(try await call(ports[1], ids[0]) == "0", "retried after a refresh")
            #expect(try await call(ports[0], ids[0]) == "0", "the other node reads the new token")
            #expect(world.simulator.rotationsHandedOut(for: ids[0]).count == before + 1)
            let counters = world.simulator.counters
            #expect(counters.refreshTokenReuses == 0 && counters.overlappingRefreshes == 0)
            try await client.shutdown()
            for daemon in daemons { await world.stop(daemon) }
            world.expectNoSecretsLeaked(extraSecrets: [secret])
        }
    }
}
