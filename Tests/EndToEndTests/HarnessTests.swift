import Foundation
import Testing

/// The end-to-end tests' own machinery.
@Suite("Test harness")
struct HarnessTests {
    // Foundation's Process learns of a child's end when a socket the child
    // inherited closes; a process that also holds it (here a grandchild, in
    // full runs a process another test spawned at the same moment) hides the
    // end until it exits itself (swiftlang/swift-corelibs-foundation#4795).
    // Seen in a fresh-clone CI run: a daemon had stopped, its process was a
    // zombie, and the test waited 15 s in vain. The harness asks the kernel.
    @Test("a command whose end Foundation cannot see is still found to have ended, with its status")
    func anEndHiddenFromFoundationIsFoundThroughTheKernel() async throws {
        let started = ContinuousClock.now
        // sh leaves a sleep holding every descriptor it had, then becomes tokenkeeper.
        let command = try TokenKeeperProcess(
            ["--version"], launcher: ["/bin/sh", "-c", "sleep 20 & exec \"$0\" \"$@\""])
        let result = await command.wait(timeout: .seconds(10))
        #expect(result.exitCode == 0, "\(result)")
        #expect(ContinuousClock.now - started < .seconds(10), "waited for the sleep, not the command")
        #expect(command.process.isRunning, "Foundation saw the end: this test no longer shows what it is for")
    }
}
