import Foundation
import IOPSimulator
import Testing
import TokenKeeperCore

/// The enrollment and inspection commands of the real binary against IOPSimulator.
@Suite("Commands end to end")
struct CommandTests {
    @Test("add --code stores the seller; token prints its access token; list --json shows it without tokens")
    func addTokenAndList() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        world.simulator.addSeller(sellerID: "2001", nick: "alpha-shop", accessTokenLifetime: .seconds(3600))
        let code = try world.simulator.issueAuthorizationCode(for: "2001")

        let added = try await world.run(["add", "--code", code])
        #expect(added.exitCode == 0, "\(added)")
        #expect(added.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2001")

        let issued = try #require(world.simulator.issuedTokens(for: "2001").last)
        let token = try await TokenKeeperProcess.run(["token", "2001", "--config", world.configPath])
        #expect(token.exitCode == 0, "exit \(token.exitCode): \(token.stderr)")
        #expect(token.stdout == issued.accessToken.exposedValue + "\n")
        world.record(token.stderr)

        let readers = try ReaderRow.all(in: world.storage)
        #expect(readers.map(\.sellerID) == ["2001"])
        #expect(readers.first?.status == "active")
        #expect(readers.first?.expireTime == issued.expireTime.millisecondsSince1970)

        let list = try await world.run(["list", "--json"])
        #expect(list.exitCode == 0, "\(list)")
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(entries.count == 1)
        #expect(entries.first?["seller_id"] as? String == "2001")
        #expect(entries.first?["status"] as? String == "active")
        #expect(entries.first?["user_nick"] as? String == "alpha-shop")
        #expect((entries.first?["expire_time"] as? NSNumber)?.int64Value == issued.expireTime.millisecondsSince1970)
        #expect((entries.first?["next_refresh_at"] as? NSNumber) != nil)

        let table = try await world.run(["list"])
        #expect(table.exitCode == 0)
        #expect(table.stdout.contains("2001") && table.stdout.contains("active"))

        // The same code a second time is refused: codes are single-use.
        let reused = try await world.run(["add", "--code", code])
        #expect(reused.exitCode == 1, "\(reused)")
        #expect(reused.stderr.contains("authorization code was refused"))
        world.expectNoSecretsLeaked()
    }

    @Test("re-authorizing a seller that needs it replaces its tokens and makes it active")
    func reauthorize() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(1, accessTokenLifetime: .seconds(3600), withAccessToken: false)
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        try world.simulator.revoke(sellerID: ids[0])
        let refreshed = try await world.run(["refresh", ids[0]])
        #expect(refreshed.exitCode == 1, "\(refreshed)")
        #expect(refreshed.stderr.contains("IllegalRefreshToken"))
        let refused = try await world.run(["token", ids[0]])
        #expect(refused.exitCode == 1)
        #expect(refused.stdout.isEmpty)
        #expect(refused.stderr.contains("re-authorization"))

        let code = try world.simulator.issueAuthorizationCode(for: ids[0])
        let added = try await world.run(["add", "--code", code])
        #expect(added.exitCode == 0, "\(added)")
        let keeper = try KeeperRow.all(in: world.storage)
        #expect(keeper[ids[0]]?.status == "active")
        expectSameToken(
            keeper[ids[0]]?.refreshToken, world.simulator.currentRefreshToken(for: ids[0])?.exposedValue,
            "stored refresh token")
        let readers = try ReaderRow.all(in: world.storage)
        #expect(readers.first?.status == "active")
        #expect(readers.first?.statusReason == nil)
        world.expectNoSecretsLeaked()
    }

    @Test("import --file stores the good lines, reports the bad ones by number and exits 1")
    func importFile() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(3, accessTokenLifetime: .seconds(3600))
        var lines = jsonl.split(separator: "\n").map(String.init)
        lines.insert("{\"seller_id\": \"9999\"}", at: 1)  // line 2: no refresh token
        lines.insert("not json at all", at: 3)  // line 4
        lines.append("")  // blank lines are skipped
        let file = world.root.appendingPathComponent("sellers.jsonl").path
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)

        let result = try await world.run(["import", "--file", file])
        #expect(result.exitCode == 1, "\(result)")
        #expect(result.stderr.contains("line 2:"))
        #expect(result.stderr.contains("refresh_token"))
        #expect(result.stderr.contains("line 4:"))
        #expect(!result.stderr.contains("line 1:") && !result.stderr.contains("line 3:"))
        #expect(result.stdout.contains("imported 3 sellers"))
        #expect(Set(try KeeperRow.all(in: world.storage).keys) == Set(ids))
        #expect(try ReaderRow.all(in: world.storage).map(\.sellerID) == ids)
        world.expectNoSecretsLeaked()
    }

    @Test("import of one seller without an access token gets its readers' row at its first refresh")
    func importOneThenRefresh() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        world.simulator.addSeller(sellerID: "4001", accessTokenLifetime: .seconds(3600))
        let pair = try world.simulator.seedTokens(for: "4001")
        let imported = try await world.run([
            "import", "--seller-id", "4001", "--refresh-token", pair.refreshToken.exposedValue,
        ])
        #expect(imported.exitCode == 0, "\(imported)")
        #expect(try ReaderRow.all(in: world.storage).isEmpty)
        let noToken = try await world.run(["token", "4001"])
        #expect(noToken.exitCode == 1)
        #expect(noToken.stderr.contains("no access token yet"))

        let refreshed = try await world.run(["refresh", "--all-due"])
        #expect(refreshed.exitCode == 0, "\(refreshed)")
        #expect(refreshed.stdout.contains("4001 refreshed"))
        let rows = try ReaderRow.all(in: world.storage)
        #expect(rows.map(\.sellerID) == ["4001"])
        #expect(rows.first?.accessToken == world.simulator.issuedTokens(for: "4001").last?.accessToken.exposedValue)
        world.expectNoSecretsLeaked()
    }

    @Test("bad input: unknown seller, usage errors, bad configuration")
    func badInput() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        // Before anything is enrolled: nothing to list, no store conjured up.
        let emptyList = try await world.run(["list", "--json"])
        #expect(emptyList.exitCode == 0 && emptyList.stdout == "[]\n", "\(emptyList)")
        let noStore = try await world.run(["token", "1001"])
        #expect(noStore.exitCode == 1)
        #expect(noStore.stderr.contains("no tokenkeeper store"), "\(noStore.stderr)")
        #expect(!FileManager.default.fileExists(atPath: world.storage))
        let (_, jsonl) = try world.seedSellers(1, accessTokenLifetime: .seconds(3600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        for command in [["token", "nobody"], ["disable", "nobody"], ["remove", "nobody"], ["refresh", "nobody"]] {
            let result = try await world.run(command)
            #expect(result.exitCode == 1, "\(command): \(result)")
            #expect(result.stderr.contains("nobody"), "\(command): \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(command)")
        }
        let usage = try await world.run(["import", "--seller-id", "1"])
        #expect(usage.exitCode == 64, "\(usage)")
        let unknownFlag = try await world.run(["list", "--frobnicate"])
        #expect(unknownFlag.exitCode == 64)

        let badConfig = world.root.appendingPathComponent("bad.yaml").path
        try "gateway:\n  url: \"not a url\"\napp:\n  key: \"1\"\n  secrt_file: /x\n".write(
            toFile: badConfig, atomically: true, encoding: .utf8)
        let bad = try await TokenKeeperProcess.run(["check-config", "--config", badConfig])
        #expect(bad.exitCode == 78, "\(bad)")
        #expect(bad.stderr.contains("app.secrt_file"))
        let missing = try await TokenKeeperProcess.run(["list", "--config", world.root.path + "/absent.yaml"])
        #expect(missing.exitCode == 78, "\(missing)")
        #expect(missing.stderr.contains("absent.yaml"))
        world.expectNoSecretsLeaked()
    }

    @Test("a wrong app secret is a configuration error naming the signature, not a crash")
    func wrongSecret() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        world.simulator.addSeller(sellerID: "5001", accessTokenLifetime: .seconds(3600))
        let code = try world.simulator.issueAuthorizationCode(for: "5001")
        try world.writeSecret("not-the-secret")
        let result = try await world.run(["add", "--code", code])
        #expect(result.exitCode == 78, "\(result)")
        #expect(result.stderr.contains("IncompleteSignature"))
        #expect(result.stderr.contains("signature"))
        #expect(!result.stderr.contains("not-the-secret"))
        let check = try await world.run(["check-config"])
        #expect(check.exitCode == 0, "\(check)")
        #expect(!check.stdout.contains("not-the-secret"))
        world.expectNoSecretsLeaked()
    }

    @Test("authorize-url builds the seller authorization URL from the configuration")
    func authorizeURL() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let result = try await world.run(["authorize-url", "--state", "xyz"])
        #expect(result.exitCode == 0, "\(result)")
        let url = try #require(URLComponents(string: result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(url.path == "/oauth/authorize")
        let query = Dictionary(uniqueKeysWithValues: (url.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(query["response_type"] == "code")
        #expect(query["force_auth"] == "true")
        #expect(query["client_id"] == EndToEndWorld.appKey)
        #expect(query["redirect_uri"] == "https://example.com/callback")
        #expect(query["state"] == "xyz")
    }

    @Test("disable, enable and remove change what readers see")
    func disableEnableRemove() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(2, accessTokenLifetime: .seconds(3600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        #expect(try await world.run(["disable", ids[0]]).exitCode == 0)
        #expect(try ReaderRow.all(in: world.storage).first { $0.sellerID == ids[0] }?.status == "disabled")
        let disabledToken = try await world.run(["token", ids[0]])
        #expect(disabledToken.exitCode == 1)
        #expect(try await world.run(["enable", ids[0]]).exitCode == 0)
        #expect(try ReaderRow.all(in: world.storage).first { $0.sellerID == ids[0] }?.status == "active")
        #expect(try await world.run(["remove", ids[1]]).exitCode == 0)
        #expect(try ReaderRow.all(in: world.storage).map(\.sellerID) == [ids[0]])
        #expect(try KeeperRow.all(in: world.storage)[ids[1]] == nil)
        world.expectNoSecretsLeaked()
    }
}
