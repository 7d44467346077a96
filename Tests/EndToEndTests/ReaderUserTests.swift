import Foundation
import IOPSimulator
import Testing
import TokenKeeperCore

/// `tokenkeeper token` run by another Unix user in the storage directory's
/// group, who may read tokens.db but not write anything: the way an app's
/// shell script would call it.
@Suite("token as a reader in the group")
struct ReaderUserTests {
    static let setpriv = "/usr/bin/setpriv"
    static let readerUser = "65534"  // nobody
    static let readersGroup: gid_t = 60_125

    /// Root (to switch user), setpriv, and a binary that others may reach.
    static var canRunAsReader: Bool {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: setpriv) else { return false }
        var url = URL(fileURLWithPath: TokenKeeperBinary.path)
        while url.path != "/" {
            let mode =
                ((try? FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions]) as? NSNumber)?
                .intValue ?? 0
            guard mode & 0o001 != 0 else { return false }
            url.deleteLastPathComponent()
        }
        return true
    }

    @Test(.enabled(if: canRunAsReader, "needs root, setpriv, and a tokenkeeper binary that other users may run"))
    func readerGetsTheTokenWithoutWriteAccess() async throws {
        let world = try await EndToEndWorld()
        defer { Task { await world.tearDown() } }
        // The storage directory as systemd lays it out: 0750, the readers' group.
        try FileManager.default.createDirectory(
            atPath: world.storage, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        #expect(chown(world.storage, uid_t.max, Self.readersGroup) == 0)
        chmod(world.root.path, 0o755)
        chmod(world.configPath, 0o644)
        let (ids, jsonl) = try world.seedSellers(2, accessTokenLifetime: .seconds(3600))
        #expect(try await world.run(["import", "--file", "-"], stdin: jsonl).exitCode == 0)
        #expect(try await world.run(["disable", ids[1]]).exitCode == 0)

        func asReader(_ arguments: [String]) async throws -> CommandResult {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.setpriv)
            process.arguments =
                [
                    "--reuid", Self.readerUser, "--regid", "\(Self.readersGroup)", "--clear-groups",
                    TokenKeeperBinary.path,
                ] + arguments + ["--config", world.configPath]
            var environment = ProcessInfo.processInfo.environment
            environment["TOKENKEEPER_APP_SECRET"] = nil
            process.environment = environment
            let out = Pipe()
            let err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let output = out.fileHandleForReading.readDataToEndOfFile()
            let errors = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return CommandResult(
                exitCode: process.terminationStatus, stdout: String(decoding: output, as: UTF8.self),
                stderr: String(decoding: errors, as: UTF8.self))
        }

        let token = try await asReader(["token", ids[0]])
        #expect(token.exitCode == 0, "\(token)")
        #expect(
            token.stdout == (world.simulator.issuedTokens(for: ids[0]).last?.accessToken.exposedValue ?? "?") + "\n")
        let disabled = try await asReader(["token", ids[1]])
        #expect(disabled.exitCode == 1)
        #expect(disabled.stdout.isEmpty)
        #expect(disabled.stderr.contains("disabled"))
        let unknown = try await asReader(["token", "nobody-here"])
        #expect(unknown.exitCode == 1)
        #expect(unknown.stderr.contains("nobody-here"))
        world.record(disabled.stdout + disabled.stderr + unknown.stdout + unknown.stderr + token.stderr)
        world.expectNoSecretsLeaked()
    }
}
