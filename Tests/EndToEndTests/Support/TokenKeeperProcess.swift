import Foundation
import Synchronization
import Testing

/// Runs the real `tokenkeeper` binary built next to the test bundle.
enum TokenKeeperBinary {
    static var path: String {
        if let override = ProcessInfo.processInfo.environment["TOKENKEEPER_BINARY"] { return override }
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        // .build/debug/tokenkeeperPackageTests.xctest is a file on Linux; walk up until the binary is found.
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("tokenkeeper").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("tokenkeeper").path
    }
}

/// What a finished command printed and how it exited.
struct CommandResult: CustomStringConvertible {
    var exitCode: Int32
    var stdout: String
    var stderr: String

    var description: String { "exit \(exitCode)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

/// Collects a pipe's output on a background thread so the child never blocks on a full pipe.
///
/// NSLock rather than Synchronization's Mutex: the suite also runs under
/// ThreadSanitizer, which cannot see Mutex's lock on Linux.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private var done = false

    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.withLock { data.append(chunk) }
            }
            lock.withLock { done = true }
        }
    }

    var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    var isFinished: Bool { lock.withLock { done } }
}

/// A running `tokenkeeper` process.
final class TokenKeeperProcess: @unchecked Sendable {
    let process = Process()
    let stdout: OutputCollector
    let stderr: OutputCollector

    /// - Parameter launcher: A program (and its arguments) that execs the
    ///   binary in the same process, such as `prlimit --nofile=1024:1024 --`.
    init(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil, launcher: [String] = [])
        throws
    {
        if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [TokenKeeperBinary.path] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: TokenKeeperBinary.path)
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        for key in env.keys
        where key.hasPrefix("TOKENKEEPER_") || key == "NOTIFY_SOCKET" || key == "CREDENTIALS_DIRECTORY" {
            env[key] = nil
        }
        env.merge(environment) { _, new in new }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        if let stdin {
            let input = Pipe()
            process.standardInput = input
            try process.run()
            // A command that exits before reading its input (a refused
            // configuration) must fail its test, not crash the whole run.
            try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        stdout = OutputCollector(out)
        stderr = OutputCollector(err)
    }

    /// A test that fails, throws or returns early never leaves a daemon
    /// running after it: the process goes with the last reference to it.
    deinit {
        guard process.isRunning, Self.exitStatus(of: process.processIdentifier) == nil else { return }
        kill(process.processIdentifier, SIGKILL)
        while process.isRunning && Self.exitStatus(of: process.processIdentifier) == nil {
            usleep(10_000)
        }
    }

    var pid: Int32 { process.processIdentifier }

    /// The child's exit as the kernel tells it, without reaping it
    /// (Foundation's Process does that): nil while it runs. Foundation on
    /// Linux learns of an exit when a socket the child inherited closes, and
    /// a process that another test spawns at the same moment can inherit that
    /// socket too (swiftlang/swift-corelibs-foundation#4795): its end then
    /// waits for that one's. Seen three times in full runs: the daemon had
    /// stopped, "kernel state Z", and `isRunning` stayed true for 15 s.
    /// The status is what Foundation would give: the exit code, or the signal.
    static func exitStatus(of pid: Int32) -> Int32? {
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0,
            info._sifields._sigchld.si_pid == pid
        else { return nil }
        return info._sifields._sigchld.si_status
    }

    /// True while the process runs, as Foundation or the kernel knows first.
    var isRunning: Bool { process.isRunning && Self.exitStatus(of: process.processIdentifier) == nil }

    /// The process's state as the kernel tells it (`/proc`): its state
    /// letter (Z: it has exited and was not reaped), and for each thread
    /// its name, state and what it waits in.
    static func kernelState(of pid: Int32) -> String {
        func read(_ path: String) -> String {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "?").trimmingCharacters(
                in: .whitespacesAndNewlines)
        }
        let stat = read("/proc/\(pid)/stat")
        let state = stat.split(separator: ")").last?.split(separator: " ").first.map(String.init) ?? "?"
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let threads = tasks.sorted().prefix(40).map { task -> String in
            let taskState =
                read("/proc/\(pid)/task/\(task)/stat").split(separator: ")").last?.split(separator: " ")
                .first.map(String.init) ?? "?"
            return "\(read("/proc/\(pid)/task/\(task)/comm")) \(taskState) \(read("/proc/\(pid)/task/\(task)/wchan"))"
        }
        return "kernel state \(state), threads: [\(threads.joined(separator: "; "))]"
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for the process to exit, at most `timeout`; kills it after that.
    func wait(timeout: Duration = .seconds(60)) async -> CommandResult {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now > deadline {
                // What it was doing when it did not stop: its last lines,
                // and whether it still runs (and in what) or has exited
                // (then its end is seen through the kernel, exitStatus(of:)).
                let lastLines = String(stderr.text.suffix(3000))
                let state = Self.kernelState(of: process.processIdentifier)
                Issue.record(
                    "tokenkeeper \(process.arguments ?? []) did not exit within \(timeout); \(state); its last lines: \(lastLines)"
                )
                process.terminate()
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        // Foundation may not have noticed yet (see exitStatus(of:)): the
        // kernel's word is enough, and waiting for Foundation could last as
        // long as another test's process.
        var exitStatus = Self.exitStatus(of: process.processIdentifier)
        while exitStatus == nil && process.isRunning {
            try? await Task.sleep(for: .milliseconds(5))
            exitStatus = Self.exitStatus(of: process.processIdentifier)
        }
        // Nil: Foundation reaped it, and says how it ended.
        let exitCode = exitStatus ?? process.terminationStatus
        let outputDeadline = ContinuousClock.now + .seconds(5)
        while !(stdout.isFinished && stderr.isFinished) && ContinuousClock.now < outputDeadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return CommandResult(exitCode: exitCode, stdout: stdout.text, stderr: stderr.text)
    }

    /// Runs a command to completion.
    static func run(
        _ arguments: [String], environment: [String: String] = [:], stdin: String? = nil,
        timeout: Duration = .seconds(60)
    ) async throws -> CommandResult {
        try await TokenKeeperProcess(arguments, environment: environment, stdin: stdin).wait(timeout: timeout)
    }
}

/// Polls a condition (the thing itself, not a fixed sleep) until it holds or the time is up.
func eventually(
    timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
