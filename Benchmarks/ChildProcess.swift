import Foundation
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#endif

/// A process the benchmark started with `posix_spawn`, watched through /proc
/// while it runs and reaped with `waitpid`.
final class ChildProcess {
    struct Exit {
        var status: Int32
        /// The most memory the process held resident (`VmHWM`, KiB), as last
        /// seen while it ran. Not `ru_maxrss`: `posix_spawn` runs the child in
        /// the parent's memory until `exec`, and Linux carries that high-water
        /// mark over, so `ru_maxrss` would report the benchmark's own size.
        var peakResidentKiB: Int
        /// From the spawn to the moment the benchmark saw it gone.
        var seconds: Double

        var succeeded: Bool { status == 0 }
    }

    let pid: pid_t
    let started = ContinuousClock.now
    private(set) var exit: Exit?
    private var peakResidentKiB = 0

    /// Starts `executable` with stdin and stdout on /dev/null and stderr
    /// appended to `logFile`, every signal at its default disposition (the
    /// benchmark ignores SIGPIPE, as NIO has it do).
    init(executable: String, arguments: [String], environment: [String: String], logFile: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid = pid_t()
        let code = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard code == 0 else { throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO) }
        self.pid = pid
    }

    /// False once the process has exited (and has been reaped).
    var isRunning: Bool {
        reap() == nil
    }

    /// Waits for the process to end, looking every 5 ms: a blocking `waitpid`
    /// would hold one of the two threads Swift's cooperative pool has here.
    @discardableResult
    func waitForExit() async throws -> Exit {
        while true {
            if let exit = reap() { return exit }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Sends SIGTERM and waits for the process to end.
    @discardableResult
    func terminate() async throws -> Exit {
        if exit == nil { kill(pid, SIGTERM) }
        return try await waitForExit()
    }

    /// The exit, once the process has ended; samples its peak memory until then.
    private func reap() -> Exit? {
        if let exit { return exit }
        peakResidentKiB = max(peakResidentKiB, memoryKiB("VmHWM") ?? 0)
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        // WEXITSTATUS and WTERMSIG are macros Swift cannot see.
        let exited = status & 0x7F == 0
        exit = Exit(
            status: exited ? (status >> 8) & 0xFF : 128 + status & 0x7F, peakResidentKiB: peakResidentKiB,
            seconds: (ContinuousClock.now - started).seconds)
        return exit
    }

    // MARK: - While it runs (from /proc)

    /// Resident memory now, in KiB; nil once the process is gone.
    var residentKiB: Int? { memoryKiB("VmRSS") }

    /// A `Vm…` line of /proc/PID/status, in KiB.
    private func memoryKiB(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        let line = text.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    /// User plus system CPU time so far, in seconds; nil once the process is gone.
    var cpuSeconds: Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
