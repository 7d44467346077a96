import Foundation
import TokenKeeperTesting

/// Prometheus's own command-line tool (`/usr/bin/promtool`, Debian's
/// `prometheus` package, which scripts/test installs) as the judge of the
/// exposition and of the alert rules.
enum PromTool {
    static let path = "/usr/bin/promtool"

    /// What `promtool check metrics` says of `exposition` (empty: nothing).
    static func checkMetrics(_ exposition: String) async throws -> String {
        // On a thread of its own: it waits for the process.
        try await OwnThread.run { try run(["check", "metrics"], input: Data(exposition.utf8)).output }
    }

    /// Runs promtool; its exit status and everything it printed.
    static func run(_ arguments: [String], input: Data = Data()) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestPython.Failure(description: "\(path) is missing: run scripts/test (it installs prometheus)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let stdin = Pipe()
        let output = Pipe()
        process.standardInput = stdin
        process.standardOutput = output
        process.standardError = output
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus,
            String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        )
    }
}
