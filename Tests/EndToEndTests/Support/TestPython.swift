import Foundation
import TokenKeeperTesting

/// The tests' own Python for what only PyPI has (the Standard Webhooks
/// reference library): `.build/test-python`, a virtual environment over
/// Debian's /usr/bin/python3 that scripts/test makes and fills.
enum TestPython {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static var path: String {
        if let path = ProcessInfo.processInfo.environment["TOKENKEEPER_TEST_PYTHON"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/test-python/bin/python3").path
    }

    /// ``run(_:input:environment:)`` on a thread of its own (``OwnThread``):
    /// it waits for Python.
    static func runDetached(_ script: String, input: Data, environment: [String: String] = [:]) async throws -> Data {
        try await OwnThread.run { try run(script, input: input, environment: environment) }
    }

    /// Runs `script` with `input` on its stdin; its stdout, or a failure
    /// with its stderr.
    static func run(_ script: String, input: Data, environment: [String: String] = [:]) throws -> Data {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failure(description: "\(path) is missing: run scripts/test (the README's test command) once")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-c", script]
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let stdin = Pipe()
        let stdout = Pipe()
        let stderrPath = FileManager.default.temporaryDirectory.appendingPathComponent("python-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: stderrPath) }
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: stderrPath)
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let problem = (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? ""
            throw Failure(description: "\(path) failed (\(process.terminationStatus)): \(problem.suffix(2000))")
        }
        return data
    }
}
