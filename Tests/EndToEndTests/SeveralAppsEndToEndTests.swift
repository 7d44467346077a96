import Foundation
import IOPSimulator
import Testing
import TokenKeeperCore

/// One daemon, two apps (issue 17): an AliExpress app on one simulated
/// gateway and a Lazada app, answering in Lazada's shape, on another; each
/// with its own key and secret. The real binary, real HTTP on loopback, the
/// real tokens.db read as readers read it.
@Suite("Several apps end to end", .serialized)
struct SeveralAppsEndToEndTests {
    static let lazadaKey = "100200"
    /// A Lazada cross-border account: one token, a seller in each country.
    static let crossBorder = [
        VentureSeller(country: "sg", sellerID: "200001", userID: "700001", shortCode: "SG2A0001"),
        VentureSeller(country: "th", sellerID: "200002", userID: "700002", shortCode: "TH2A0002"),
        VentureSeller(country: "my", sellerID: "200003", userID: "700003", shortCode: "MY2A0003"),
    ]

    /// The world's AliExpress simulator as app `ae`, a Lazada simulator as
    /// app `lazada_sg`; the configuration has `apps:` and no `app:`.
    struct Scene {
        let world: EndToEndWorld
        let lazada: IOPSimulator
        let lazadaSecret: Secret
        let lazadaSecretPath: String

        init(settings: [String: String] = [:]) async throws {
            world = try await EndToEndWorld(settings: settings)
            var random = SystemRandomNumberGenerator()
            lazadaSecret = Secret("lazada-secret-" + String(random.next() as UInt64, radix: 36))
            lazada = IOPSimulator(
                appKey: SeveralAppsEndToEndTests.lazadaKey, appSecret: lazadaSecret, randomSeed: random.next(),
                answerShape: .lazada)
            let address = try await lazada.start()
            lazadaSecretPath = world.root.appendingPathComponent("lazada_secret").path
            guard
                FileManager.default.createFile(
                    atPath: lazadaSecretPath, contents: Data(lazadaSecret.exposedValue.utf8),
                    attributes: [.posixPermissions: 0o600])
            else { throw CocoaError(.fileWriteUnknown) }
            try world.writeConfig(
                [
                    "apps.ae.key": EndToEndWorld.appKey, "apps.ae.secret_file": world.secretPath,
                    "apps.ae.redirect_uri": "https://example.com/callback/ae",
                    "apps.lazada_sg.key": SeveralAppsEndToEndTests.lazadaKey,
                    "apps.lazada_sg.secret_file": lazadaSecretPath,
                    "apps.lazada_sg.redirect_uri": "https://example.com/callback/lazada_sg",
                    "apps.lazada_sg.authorize_url": "https://auth.lazada.com/oauth/authorize",
                    "apps.lazada_sg.gateway.url": address.baseURL,
                ], removing: ["app."])
        }

        /// An import line of `app` for a seller the simulator has just seeded.
        func importLine(_ app: String, _ sellerID: String, on simulator: IOPSimulator) throws -> String {
            let pair = try simulator.seedTokens(for: sellerID)
            let object: [String: Any] = [
                "app": app, "seller_id": sellerID, "refresh_token": pair.refreshToken.exposedValue,
                "access_token": pair.accessToken.exposedValue, "expire_time": pair.expireTime.millisecondsSince1970,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            return String(decoding: data, as: UTF8.self)
        }

        var tokensPath: String { world.storage + "/tokens.db" }

        /// Every token either gateway issued and both secrets.
        var secrets: [String] {
            var values = [lazadaSecret.exposedValue]
            for sellerID in lazada.sellerIDs {
                for pair in lazada.issuedTokens(for: sellerID) {
                    values += [pair.accessToken.exposedValue, pair.refreshToken.exposedValue]
                }
            }
            return values
        }

        func tearDown() async {
            await lazada.shutdown()
            await world.tearDown()
        }
    }

    @Test(
        "two apps on two gateways, one a Lazada cross-border account: each refreshed again and again on its own gateway"
    )
    func twoAppsOnTwoGateways() async throws {
        let scene = try await Scene(settings: ["refresh.max_calls_per_second": "20"])
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        var lines: [String] = []
        for index in 0..<4 {
            let sellerID = "30000\(index)"
            world.simulator.addSeller(sellerID: sellerID, accessTokenLifetime: .seconds(10))
            lines.append(try scene.importLine("ae", sellerID, on: world.simulator))
        }
        scene.lazada.addSeller(.crossBorderAccount(ventures: Self.crossBorder, accessTokenLifetime: .seconds(10)))
        lines.append(try scene.importLine("lazada_sg", Self.crossBorder[0].sellerID, on: scene.lazada))
        // The same seller id under both apps: two accounts.
        world.simulator.addSeller(sellerID: "1001", accessTokenLifetime: .seconds(10))
        scene.lazada.addSeller(sellerID: "1001", accessTokenLifetime: .seconds(10), country: "th")
        lines.append(try scene.importLine("ae", "1001", on: world.simulator))
        lines.append(try scene.importLine("lazada_sg", "1001", on: scene.lazada))
        let imported = try await world.run(["import", "--file", "-"], stdin: lines.joined(separator: "\n") + "\n")
        #expect(imported.exitCode == 0, "\(imported.stderr)")

        let daemon = try world.startDaemon()
        let aeSellers = ["300000", "300001", "300002", "300003", "1001"]
        let lazadaSellers = [Self.crossBorder[0].sellerID, "1001"]
        #expect(
            await eventually(timeout: .seconds(60)) {
                aeSellers.allSatisfy { world.simulator.rotationsHandedOut(for: $0).count >= 3 }
                    && lazadaSellers.allSatisfy { scene.lazada.rotationsHandedOut(for: $0).count >= 3 }
            }, "every seller of both apps is refreshed three times: \(daemon.stderr.text.suffix(3000))")

        // Readers find the Lazada account's token by each of its three seller ids.
        let account = try #require(
            try SQLiteReader.query(
                scene.tokensPath, "SELECT access_token FROM tokens WHERE app = 'lazada_sg' AND seller_id = '200001'"
            ).first?.first ?? nil)
        for venture in Self.crossBorder {
            let rows = try SQLiteReader.query(
                scene.tokensPath,
                "SELECT app, country, short_code, access_token FROM seller_tokens WHERE seller_id = '\(venture.sellerID)'"
            )
            #expect(rows.count == 1, "\(venture.sellerID)")
            #expect(rows.first?[0] == "lazada_sg")
            #expect(rows.first?[1] == venture.country)
            #expect(rows.first?[2] == venture.shortCode)
            expectSameToken(rows.first?[3] ?? nil, account, "\(venture.sellerID)'s token is the account's")
        }

        // The same seller id under two apps: two rows, each its own gateway's token.
        let twins = try SQLiteReader.query(
            scene.tokensPath, "SELECT app, access_token FROM tokens WHERE seller_id = '1001' ORDER BY app")
        #expect(twins.map { $0[0] } == ["ae", "lazada_sg"])
        let aeToken = try #require(twins.first?[1] ?? nil)
        let lazadaToken = try #require(twins.last?[1] ?? nil)
        #expect(aeToken != lazadaToken)
        if case .unknown = world.simulator.accessTokenStatus(aeToken) {
            Issue.record("ae's row of 1001 holds a token its gateway never issued")
        }
        if case .unknown = scene.lazada.accessTokenStatus(lazadaToken) {
            Issue.record("lazada_sg's row of 1001 holds a token its gateway never issued")
        }

        // A command given a seller id two apps have asks which.
        let ambiguous = try await world.run(["token", "1001"])
        #expect(ambiguous.exitCode == 64)
        #expect(ambiguous.stderr.contains("several apps (ae, lazada_sg)"), "\(ambiguous.stderr)")
        // Not recorded: printing the token is what `token` is for.
        let named = try await TokenKeeperProcess.run([
            "token", "1001", "--app", "lazada_sg", "--config", world.configPath,
        ])
        #expect(named.exitCode == 0, "\(named.stderr)")
        expectSameToken(
            named.stdout.trimmingCharacters(in: .whitespacesAndNewlines), lazadaToken, "token 1001 --app lazada_sg")
        let status = try await world.run(["status"])
        #expect(status.stdout.contains("app ae: 5 active"), "\(status.stdout)")
        #expect(status.stdout.contains("app lazada_sg: 2 active"), "\(status.stdout)")

        let result = await world.stop(daemon)
        // Each gateway saw only its own app's calls, every signature valid.
        for (simulator, key) in [(world.simulator, EndToEndWorld.appKey), (scene.lazada, Self.lazadaKey)] {
            #expect(Set(simulator.countersByApp.keys) == [key])
            #expect(simulator.counters.rejections.isEmpty, "\(key): \(simulator.counters.rejections)")
            #expect(simulator.counters.refreshTokenReuses == 0)
            #expect(simulator.counters.overlappingRefreshes == 0)
        }
        world.record(result.stdout + result.stderr)
        world.expectNoSecretsLeaked(extraSecrets: scene.secrets)
    }

    @Test("one app's gateway throttles, then rejects its secret for a minute: the other app keeps its schedule")
    func oneAppsTroubleHoldsOnlyThatApp() async throws {
        let scene = try await Scene(settings: ["refresh.configuration_probe_seconds": "5"])
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        var lines: [String] = []
        let aeSellers = (0..<4).map { "40000\($0)" }
        let lazadaSellers = (0..<4).map { "50000\($0)" }
        for sellerID in aeSellers {
            world.simulator.addSeller(sellerID: sellerID, accessTokenLifetime: .seconds(10))
            lines.append(try scene.importLine("ae", sellerID, on: world.simulator))
        }
        for sellerID in lazadaSellers {
            scene.lazada.addSeller(sellerID: sellerID, accessTokenLifetime: .seconds(10), country: "sg")
            lines.append(try scene.importLine("lazada_sg", sellerID, on: scene.lazada))
        }
        #expect(
            try await world.run(["import", "--file", "-"], stdin: lines.joined(separator: "\n") + "\n").exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(
            await eventually(timeout: .seconds(30)) {
                lazadaSellers.allSatisfy { scene.lazada.rotationsHandedOut(for: $0).count >= 1 }
            })

        // Lazada's gateway throttles, then its app secret is changed on the
        // console (every signature of ours refused) for a minute.
        scene.lazada.injectFaults(.throttled, count: 3)
        #expect(
            await eventually(timeout: .seconds(30)) { scene.lazada.counters.faults[.throttled, default: 0] >= 3 },
            "the throttling answers were met")
        let before = Dictionary(
            uniqueKeysWithValues: aeSellers.map { ($0, world.simulator.rotationsHandedOut(for: $0).count) })
        let incident = ContinuousClock.now
        scene.lazada.updateBehavior { $0.apps[Self.lazadaKey] = Secret("changed-on-the-console") }
        var lateAE: [String] = []
        var statusDuring: String?
        while ContinuousClock.now - incident < .seconds(60) {
            if statusDuring == nil, ContinuousClock.now - incident > .seconds(30) {
                statusDuring = try await world.run(["status"]).stdout
            }
            // Readers always find a valid token for every ae seller.
            let valid = try SQLiteReader.query(
                scene.tokensPath, "SELECT seller_id FROM valid_tokens WHERE app = 'ae'"
            ).compactMap { $0.first ?? nil }
            lateAE += aeSellers.filter { !valid.contains($0) }
            try await Task.sleep(for: .milliseconds(500))
        }
        scene.lazada.updateBehavior { $0.apps[Self.lazadaKey] = scene.lazadaSecret }
        #expect(lateAE.isEmpty, "ae sellers without a valid token during the incident: \(Set(lateAE))")
        for sellerID in aeSellers {
            // 10 s tokens refreshed at 8 s: about seven rotations a minute.
            #expect(
                world.simulator.rotationsHandedOut(for: sellerID).count - before[sellerID, default: 0] >= 5,
                "\(sellerID) kept its schedule")
        }
        #expect(
            daemon.stderr.text.contains("the gateway rejects the configuration of app lazada_sg (IncompleteSignature)"),
            "the error names the app")
        #expect(
            statusDuring?.contains("app lazada_sg: the gateway rejects our configuration") == true,
            "status during the incident names the app: \(statusDuring ?? "")")
        let afterIncident = Dictionary(
            uniqueKeysWithValues: lazadaSellers.map { ($0, scene.lazada.rotationsHandedOut(for: $0).count) })
        #expect(
            await eventually(timeout: .seconds(40)) {
                lazadaSellers.allSatisfy {
                    scene.lazada.rotationsHandedOut(for: $0).count > afterIncident[$0, default: 0]
                }
            }, "lazada_sg's sellers are refreshed again once its secret works: \(daemon.stderr.text.suffix(2000))")
        let rows = try KeeperRow.all(in: world.storage)
        #expect(rows.values.allSatisfy { $0.status == "active" }, "nobody was marked: \(rows.values.map(\.status))")
        #expect(world.simulator.counters.rejections.isEmpty)
        #expect(scene.lazada.counters.refreshTokenReuses == 0)
        let result = await world.stop(daemon)
        world.record(result.stdout + result.stderr)
        world.expectNoSecretsLeaked(extraSecrets: scene.secrets)
    }

    @Test("one callback listener serves both apps: each app's link comes back to its path and enrolls under its app")
    func theCallbackServesEachAppOnItsPath() async throws {
        let callbackPort = try freePort()
        let scene = try await Scene(settings: ["callback.listen": "127.0.0.1:\(callbackPort)"])
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        let lazadaPage = try #require(scene.lazada.baseURL).replacingOccurrences(of: "/rest", with: "/oauth/authorize")
        try world.writeConfig([
            "apps.ae.redirect_uri": "http://127.0.0.1:\(callbackPort)/callback/ae",
            "apps.lazada_sg.redirect_uri": "http://127.0.0.1:\(callbackPort)/callback/lazada_sg",
            "apps.lazada_sg.authorize_url": lazadaPage,
        ])
        world.simulator.addSeller(sellerID: "1001", accessTokenLifetime: .seconds(600))
        scene.lazada.addSeller(sellerID: "1001", accessTokenLifetime: .seconds(600), country: "sg")
        world.simulator.updateBehavior { $0.loggedInSeller = "1001" }
        scene.lazada.updateBehavior { $0.loggedInSeller = "1001" }
        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")

        /// The seller opens the link, logs in, and the page sends the browser back.
        func callbackURL(for app: String) async throws -> String {
            let link = try await world.run(["authorize-url", "--app", app, "--seller", "1001"])
            #expect(link.exitCode == 0, "\(link.stderr)")
            let page = try await Browser.get(link.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(page.status == 302)
            return try #require(page.location)
        }

        // A Lazada link brought to ae's path is refused: its code is the Lazada app's.
        let lazadaCallback = try await callbackURL(for: "lazada_sg")
        #expect(lazadaCallback.hasPrefix("http://127.0.0.1:\(callbackPort)/callback/lazada_sg?"))
        let misrouted = try await Browser.get(
            lazadaCallback.replacingOccurrences(of: "/callback/lazada_sg?", with: "/callback/ae?"))
        #expect(misrouted.status == 400, "\(misrouted.body)")
        #expect(misrouted.body.contains("made for app lazada_sg"), "\(misrouted.body)")
        #expect(world.simulator.counters.codeExchanges == 0, "no code was sent to the other app's gateway")

        let lazadaLanding = try await Browser.get(lazadaCallback)
        #expect(lazadaLanding.status == 200, "\(lazadaLanding.body)")
        let aeLanding = try await Browser.get(try await callbackURL(for: "ae"))
        #expect(aeLanding.status == 200, "\(aeLanding.body)")
        #expect(world.simulator.counters.codeExchanges == 1)
        #expect(scene.lazada.counters.codeExchanges == 1)

        let rows = try SQLiteReader.query(
            scene.tokensPath, "SELECT app, access_token FROM tokens WHERE seller_id = '1001' ORDER BY app")
        #expect(rows.map { $0[0] } == ["ae", "lazada_sg"])
        if case .unknown = scene.lazada.accessTokenStatus(try #require(rows.last?[1] ?? nil)) {
            Issue.record("the Lazada app's account holds a token its gateway never issued")
        }
        let result = await world.stop(daemon)
        world.record(result.stdout + result.stderr)
        world.expectNoSecretsLeaked(extraSecrets: scene.secrets)
    }

    @Test(
        "a reload adds an app and its sellers are refreshed; removing an app that still has sellers is refused by name")
    func aReloadAddsAndRefusesToRemoveApps() async throws {
        let scene = try await Scene()
        defer { Task { await scene.tearDown() } }
        let world = scene.world
        // The daemon starts with ae alone.
        let lazadaKeys = world.configValues.keys.filter { $0.hasPrefix("apps.lazada_sg.") }
        let lazadaSettings = world.configValues.filter { $0.key.hasPrefix("apps.lazada_sg.") }
        try world.writeConfig(removing: Array(lazadaKeys))
        world.simulator.addSeller(sellerID: "600000", accessTokenLifetime: .seconds(8))
        let aeLine = try scene.importLine("ae", "600000", on: world.simulator)
        #expect(try await world.run(["import", "--file", "-"], stdin: aeLine + "\n").exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")

        // lazada_sg is added to the file, a seller of it imported, and the daemon reloaded.
        try world.writeConfig(lazadaSettings)
        scene.lazada.addSeller(sellerID: "700000", accessTokenLifetime: .seconds(8), country: "th")
        let lazadaLine = try scene.importLine("lazada_sg", "700000", on: scene.lazada)
        let imported = try await world.run(["import", "--file", "-"], stdin: lazadaLine + "\n")
        #expect(imported.exitCode == 0, "\(imported.stderr)")
        daemon.signal(SIGHUP)
        #expect(
            await eventually(timeout: .seconds(30)) { scene.lazada.rotationsHandedOut(for: "700000").count >= 2 },
            "the new app's seller is refreshed: \(daemon.stderr.text.suffix(2000))")

        // ae still has its seller: removing it is refused, and ae goes on.
        try world.writeConfig(removing: ["apps.ae."])
        daemon.signal(SIGHUP)
        #expect(
            await eventually {
                daemon.stderr.text.contains("apps removed from the configuration still have sellers: ae (1 sellers)")
            }, "\(daemon.stderr.text.suffix(2000))")
        let before = world.simulator.rotationsHandedOut(for: "600000").count
        #expect(
            await eventually(timeout: .seconds(20)) {
                world.simulator.rotationsHandedOut(for: "600000").count > before
            },
            "ae's seller is refreshed after the refused reload")
        let result = await world.stop(daemon)
        world.record(result.stdout + result.stderr)
        world.expectNoSecretsLeaked(extraSecrets: scene.secrets)
    }

    @Test(
        "a store made by the single-app release is migrated at start; readers' queries and 'token SELLER' still answer")
    func aSingleAppStoreIsMigrated() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/single-app-store")
        try FileManager.default.createDirectory(
            atPath: world.storage, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        for (name, mode) in [("keeper.db", 0o600), ("tokens.db", 0o640)] {
            let target = world.storage + "/" + name
            try FileManager.default.copyItem(atPath: fixture.appendingPathComponent(name).path, toPath: target)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: target)
        }
        let tokens = world.storage + "/tokens.db"
        #expect(try SQLiteReader.query(tokens, "PRAGMA user_version").first?.first == "1", "the old schema")

        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")
        // The single-app release's readers' queries, unchanged.
        #expect(
            try SQLiteReader.query(tokens, "SELECT access_token FROM tokens WHERE seller_id = '1001'")
                == [["AT-fixture-1001"]])
        #expect(
            try SQLiteReader.query(tokens, "SELECT seller_id FROM valid_tokens ORDER BY seller_id")
                == [["1001"], ["1002"]])
        #expect(try SQLiteReader.query(tokens, "PRAGMA user_version").first?.first == "2")
        #expect(
            try SQLiteReader.query(tokens, "SELECT app, access_token FROM seller_tokens WHERE seller_id = '1002'")
                == [["default", "AT-fixture-1002"]])
        let token = try await world.run(["token", "1001"])
        #expect(token.exitCode == 0, "\(token.stderr)")
        #expect(token.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "AT-fixture-1001")
        let disabled = try await world.run(["token", "1003"])
        #expect(disabled.exitCode == 1)
        #expect(disabled.stderr.contains("seller 1003 is disabled"))
        let list = try await world.run(["list"])
        #expect(list.stdout.contains("1002"))
        await world.stop(daemon)
        #expect(try KeeperRow.all(in: world.storage).count == 3)
    }
}
