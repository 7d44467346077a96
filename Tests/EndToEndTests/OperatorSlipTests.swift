import Foundation
import IOPSimulator
import Testing
import TokenKeeperCore

/// What the first tests left out: two refreshers racing for one seller across
/// processes, a run at debug level scanned for secrets, `run` with a bad
/// configuration, a SIGHUP with a bad file, an unreachable gateway, and `demo`.
@Suite("Operator slips end to end")
struct OperatorSlipTests {
    @Test("a CLI refresh while the daemon's call for that seller is held gets the lease, not the gateway")
    func cliRefreshWhileTheDaemonsCallIsHeld() async throws {
        let world = try await EndToEndWorld(settings: ["gateway.timeout_seconds": "30"]) {
            $0.responseLatency = .seconds(20)
        }
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(1, accessTokenLifetime: .seconds(600), withAccessToken: false)
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(await eventually { world.simulator.heldAnswerCount == 1 }, "\(daemon.stderr.text)")

        let cli = try await world.run(["refresh", ids[0]])
        #expect(cli.exitCode == 1, "\(cli)")
        #expect(cli.stderr.contains("being refreshed by another process"), "\(cli.stderr)")
        #expect(world.simulator.sellerStats(for: ids[0])?.refreshRequests == 1, "the CLI sent nothing")

        world.simulator.releaseHeldAnswers()
        #expect(
            await eventually {
                (try? KeeperRow.all(in: world.storage)[ids[0]]?.refreshToken)
                    == world.simulator.currentRefreshToken(for: ids[0])?.exposedValue
            })
        daemon.signal(SIGTERM)
        let result = await daemon.wait(timeout: .seconds(40))
        world.record(result.stdout + result.stderr)
        #expect(world.simulator.counters.overlappingRefreshes == 0)
        #expect(world.simulator.counters.refreshTokenReuses == 0)
        world.expectNoSecretsLeaked()
    }

    @Test("a run at debug level with faults of every kind leaks no token or secret")
    func debugLogsLeakNothing() async throws {
        let world = try await EndToEndWorld(settings: [
            "log.level": "debug", "refresh.max_calls_per_second": "50", "refresh.concurrency": "8",
        ]) { behavior in
            behavior.faults = .uniform(rate: 0.4)
            behavior.slowResponseDelay = .milliseconds(300)
        }
        defer { Task { await world.tearDown() } }
        let (_, jsonl) = try world.seedSellers(10, accessTokenLifetime: .seconds(6))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(
            await eventually(timeout: .seconds(30)) {
                world.simulator.counters.rotations >= 20 && world.simulator.counters.totalFaults >= 10
            })
        daemon.signal(SIGTERM)
        let result = await daemon.wait(timeout: .seconds(30))
        #expect(result.stderr.contains("DEBUG") || result.stderr.contains(" debug "), "the run logged at debug level")
        world.record(result.stdout + result.stderr)
        world.expectNoSecretsLeaked()
    }

    @Test(
        "run with a bad configuration exits 78 naming the key; a bad file at SIGHUP is refused and the daemon goes on")
    func badConfigurationAtStartAndAtReload() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        try world.writeConfig(["refresh.concurrency": "0"])
        let refused = try await world.run(["run"])
        #expect(refused.exitCode == 78, "\(refused)")
        #expect(refused.stderr.contains("refresh.concurrency"))

        try world.writeConfig(["refresh.concurrency": "4"])
        let (ids, jsonl) = try world.seedSellers(2, accessTokenLifetime: .seconds(8))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") })
        try world.writeConfig(["refresh.concurrency": "many"])
        daemon.signal(SIGHUP)
        #expect(await eventually { daemon.stderr.text.contains("reload refused; keeping the running configuration") })
        #expect(daemon.stderr.text.contains("refresh.concurrency"))
        let before = world.simulator.counters.rotations
        #expect(
            await eventually(timeout: .seconds(20)) { world.simulator.counters.rotations >= before + 2 },
            "refreshing goes on")
        daemon.signal(SIGTERM)
        let result = await daemon.wait(timeout: .seconds(30))
        #expect(result.exitCode == 0)
        world.record(result.stdout + result.stderr)
        #expect(try KeeperRow.all(in: world.storage).values.allSatisfy { $0.status == "active" } && ids.count == 2)
        world.expectNoSecretsLeaked()
    }

    @Test("refresh with the gateway unreachable exits 69 and keeps the token")
    func unreachableGatewayExits69() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(1, accessTokenLifetime: .seconds(600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let before = try KeeperRow.all(in: world.storage)[ids[0]]?.refreshToken
        // A port nothing listens on: the simulator's, after it stopped.
        await world.simulator.shutdown()
        let result = try await world.run(["refresh", ids[0]])
        #expect(result.exitCode == 69, "\(result)")
        expectSameToken(try KeeperRow.all(in: world.storage)[ids[0]]?.refreshToken, before, "the token stays")
        world.expectNoSecretsLeaked()
    }

    @Test("a damaged keeper.db is refused (exit 78, left untouched); a damaged tokens.db is moved aside and rebuilt")
    func damagedFiles() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(3, accessTokenLifetime: .seconds(600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)

        let tokens = world.storage + "/tokens.db"
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: tokens))
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: tokens + suffix) }
        let daemon = try world.startDaemon()
        #expect(await eventually { daemon.stderr.text.contains("schedule loaded") }, "\(daemon.stderr.text)")
        #expect(daemon.stderr.text.contains("tokens.db was damaged"))
        #expect(try ReaderRow.all(in: world.storage).map(\.sellerID).sorted() == ids.sorted())
        daemon.signal(SIGTERM)
        let stopped = await daemon.wait(timeout: .seconds(30))
        world.record(stopped.stdout + stopped.stderr)

        let keeper = world.storage + "/keeper.db"
        let garbage = Data(repeating: 0x42, count: 8192)
        try garbage.write(to: URL(fileURLWithPath: keeper))
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: keeper + suffix) }
        let refused = try await world.run(["run"])
        #expect(refused.exitCode == 78, "\(refused)")
        #expect(refused.stderr.contains("not an SQLite database"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: keeper)) == garbage)
        world.expectNoSecretsLeaked()
    }

    @Test("Ctrl-C during tokenkeeper refresh waits for the calls sent and stores their rotations")
    func cliRefreshFinishesWhatItSentOnSIGINT() async throws {
        let world = try await EndToEndWorld(settings: ["refresh.concurrency": "2", "refresh.max_calls_per_second": "0"])
        {
            $0.responseLatency = .seconds(3)
        }
        defer { Task { await world.tearDown() } }
        let (ids, jsonl) = try world.seedSellers(6, accessTokenLifetime: .seconds(600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let cli = try TokenKeeperProcess(["refresh"] + ids + ["--config", world.configPath])
        #expect(await eventually { world.simulator.heldAnswerCount == 2 }, "two calls in flight")
        cli.signal(SIGINT)
        let result = await cli.wait(timeout: .seconds(30))
        world.record(result.stdout + result.stderr)
        #expect(result.stderr.contains("finishing the calls already sent"), "\(result)")
        let keeper = try KeeperRow.all(in: world.storage)
        let rotated = ids.filter { world.lastRotation(of: $0) != nil }
        #expect(rotated.count == 2, "only the calls sent before Ctrl-C went out")
        for sellerID in rotated {
            expectSameToken(
                keeper[sellerID]?.refreshToken, world.lastRotation(of: sellerID), "\(sellerID) kept its rotation")
        }
        #expect(result.stderr.contains("not attempted"), "the others are reported as not attempted")
        world.expectNoSecretsLeaked()
    }

    @Test("demo, the README's first command, runs the daemon against the simulator and stops cleanly")
    func demoRuns() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tokenkeeper-demo-test-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let result = try await TokenKeeperProcess.run(
            ["demo", "--duration", "4", "--directory", scratch], timeout: .seconds(60))
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdout.contains("daemon ready"))
        #expect(result.stdout.contains("sqlite3"))
        #expect(result.stdout.contains("daemon stopped"))
        let rows = try ReaderRow.all(in: scratch)
        // Six AliExpress sellers and one Lazada account, of two apps.
        #expect(rows.count == 7 && rows.allSatisfy { $0.status == "active" })
        let apps = try SQLiteReader.query(scratch + "/tokens.db", "SELECT app, count(*) FROM tokens GROUP BY app")
        #expect(apps == [["ae", "6"], ["lazada_sg", "1"]])
        let ventures = try SQLiteReader.query(
            scratch + "/tokens.db", "SELECT country FROM seller_tokens WHERE app = 'lazada_sg' ORDER BY country")
        #expect(ventures == [["my"], ["sg"], ["th"]], "the cross-border account's three sellers")
    }

    @Test(
        "demo shows the whole loop: the revoked seller's event, its link, the simulated click, the seller active again")
    func demoClosesTheReauthorizationLoop() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tokenkeeper-demo-loop-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let result = try await TokenKeeperProcess.run(
            ["demo", "--duration", "42", "--directory", scratch], timeout: .seconds(120))
        #expect(result.exitCode == 0, "\(result)")
        let out = result.stdout
        #expect(out.contains("\"kind\":\"reauth_required\""), "\(out.suffix(3000))")
        #expect(out.contains("the seller is sent this link"))
        #expect(out.contains("callback answered HTTP 200: Authorized: seller 210000002 is active again"))
        #expect(out.contains("seller 210000002 is now active; no command was typed"))
        #expect(out.contains("\"kind\":\"reactivated\""))
        #expect(!out.contains("code=") || out.contains("code=…"), "the one-use code is not printed")
        let rows = try ReaderRow.all(in: scratch)
        #expect(rows.count == 7 && rows.allSatisfy { $0.status == "active" })
    }
}
