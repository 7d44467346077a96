import Foundation
import IOPSimulator
import Testing
import TokenKeeperTesting

@testable import TokenKeeperService

@Suite struct SystemdNotifierTests {
    @Test func sendsEachMessageAsOneDatagramWithNewlinesFlattened() throws {
        let scratch = try ScratchDirectory()
        let socket = try NotifySocket(path: scratch.path + "/notify.sock")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path])
        #expect(notifier.isEnabled)
        notifier.ready(status: "3 sellers\nscheduled")
        notifier.watchdog()
        notifier.stopping()
        #expect(socket.lines == ["READY=1", "STATUS=3 sellers scheduled", "WATCHDOG=1", "STOPPING=1"])
    }

    @Test func withoutNotifySocketNothingIsSent() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(!notifier.send(["READY=1"]))
    }

    /// The scheduler sends from its own loop: a manager that stopped reading
    /// must cost a lost datagram, never a blocked daemon.
    @Test(.timeLimit(.minutes(1)))
    func aReceiverThatStoppedReadingNeverBlocksTheSender() throws {
        let scratch = try ScratchDirectory()
        let socket = try NotifySocket(path: scratch.path + "/notify.sock")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path])
        var delivered = 0
        var dropped = 0
        for index in 0..<20_000 {
            if notifier.send(["STATUS=\(index) sellers scheduled, next refresh soon"]) {
                delivered += 1
            } else {
                dropped += 1
            }
            if dropped > 10 { break }
        }
        #expect(delivered > 0)
        #expect(dropped > 0, "the receive queue never filled; the test proves nothing")
        withExtendedLifetime(socket) {}
    }

    @Test func watchdogIntervalComesFromWatchdogUsecForThisProcessOnly() {
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "60000000"]) == .seconds(60))
        #expect(
            SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"]) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: [:]) == nil)
    }
}
