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
                #expect(page.status == 400 || page.status == 502, "\(page.status) \(page.body)")
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
}
