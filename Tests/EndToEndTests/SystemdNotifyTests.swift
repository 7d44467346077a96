import Foundation
import IOPSimulator
import Testing

/// The daemon's sd_notify messages, received as systemd would: a datagram
/// socket named by `NOTIFY_SOCKET`.
@Suite("sd_notify end to end")
struct SystemdNotifyTests {
    @Test("READY=1 once loaded, WATCHDOG=1 at least twice per watchdog interval, STATUS=, STOPPING=1")
    func notifications() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        let (_, jsonl) = try world.seedSellers(3, accessTokenLifetime: .seconds(3600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        let socket = try NotifySocket(path: world.root.path + "/notify.sock")

        let daemon = try world.startDaemon(environment: [
            "NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000",
        ])
        #expect(await eventually(timeout: .seconds(20)) { socket.lines.contains("READY=1") })
        let readyAt = ContinuousClock.now
        // WatchdogSec=1s: a ping at least every half second, from the scheduler's tick.
        #expect(await eventually(timeout: .seconds(5)) { socket.lines.filter { $0 == "WATCHDOG=1" }.count >= 4 })
        #expect(ContinuousClock.now - readyAt < .seconds(4))  // 2 s at a ping per 0.5 s, with room for a loaded machine
        let status = socket.lines.last { $0.hasPrefix("STATUS=") } ?? ""
        #expect(status.contains("3 sellers scheduled"), "\(status)")
        #expect(status.contains("0 need re-authorization"), "\(status)")
        #expect(status.contains("next refresh 20"), "\(status)")

        daemon.signal(SIGTERM)
        let result = await daemon.wait(timeout: .seconds(15))
        #expect(result.exitCode == 0, "\(result.stderr)")
        #expect(socket.lines.contains("STOPPING=1"))
        world.record(result.stdout + result.stderr + socket.lines.joined(separator: "\n"))
        world.expectNoSecretsLeaked()
    }
}
