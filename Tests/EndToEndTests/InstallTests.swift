import Foundation
import Testing

/// `systemd/install.sh` into a scratch DESTDIR, and the unit it lays down.
@Suite("Install script and systemd unit")
struct InstallTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let systemdAnalyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    struct Output {
        var status: Int32
        var text: String
    }

    static func shell(_ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.currentDirectoryURL = packageRoot
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, text: String(decoding: data, as: UTF8.self))
    }

    /// Where packaging/manual-and-completions.sh puts each shell's completion.
    static let completionFiles = [("bash", "tokenkeeper"), ("zsh", "_tokenkeeper"), ("fish", "tokenkeeper.fish")]

    static func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? NSNumber)?.intValue ?? -1
    }

    @Test("install.sh lays down binary, unit, sysusers, tmpfiles and config, and keeps an existing config")
    func installIntoDestdir() throws {
        let destdir = NSTemporaryDirectory() + "tokenkeeper-install-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: destdir) }
        // The manual page and completions as packaging/manual-and-completions.sh
        // lays them out: making the page builds swift-argument-parser's
        // generator (40 s of both cores in a fresh clone, which starved the
        // suites running beside it), so that path runs in the package test,
        // alone. Here the completions are the binary's own, the page a stand-in.
        let generated = destdir + "-generated"
        defer { try? FileManager.default.removeItem(atPath: generated) }
        let page = ".Dd December 5, 2026\n.Dt TOKENKEEPER 1\n.Sh NAME\n.Nm tokenkeeper\n.Nd stand-in\n"
        try FileManager.default.createDirectory(atPath: generated + "/man1", withIntermediateDirectories: true)
        try page.write(toFile: generated + "/man1/tokenkeeper.1", atomically: true, encoding: .utf8)
        for (shell, file) in Self.completionFiles {
            try FileManager.default.createDirectory(atPath: generated + "/" + shell, withIntermediateDirectories: true)
            let script = try Self.shell([TokenKeeperBinary.path, "--generate-completion-script", shell])
            try script.text.write(toFile: generated + "/" + shell + "/" + file, atomically: true, encoding: .utf8)
        }
        let environment = [
            "DESTDIR": destdir, "PREFIX": "/opt/tk", "TOKENKEEPER_BINARY": TokenKeeperBinary.path,
            "TOKENKEEPER_GENERATED": generated,
        ]
        let first = try Self.shell(["bash", "systemd/install.sh"], environment: environment)
        #expect(first.status == 0, "\(first.text)")

        let binary = destdir + "/opt/tk/bin/tokenkeeper"
        #expect(FileManager.default.isExecutableFile(atPath: binary))
        #expect(Self.mode(binary) == 0o755)
        let unitPath = destdir + "/etc/systemd/system/tokenkeeper.service"
        let unit = try String(contentsOfFile: unitPath, encoding: .utf8)
        #expect(unit.contains("ExecStart=/opt/tk/bin/tokenkeeper run"))
        #expect(!unit.contains("/usr/local/bin"))
        for line in [
            "Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=tokenkeeper",
            "StateDirectoryMode=0750", "LoadCredential=app_secret:/etc/tokenkeeper/app_secret", "UMask=0027",
            "User=tokenkeeper", "Group=tokenkeeper",
        ] {
            #expect(unit.contains(line), "the unit lacks \(line)")
        }
        let sysusers = try String(contentsOfFile: destdir + "/usr/lib/sysusers.d/tokenkeeper.conf", encoding: .utf8)
        #expect(sysusers.contains("tokenkeeper"))
        #expect(FileManager.default.fileExists(atPath: destdir + "/usr/lib/tmpfiles.d/tokenkeeper.conf"))
        let config = destdir + "/etc/tokenkeeper/config.yaml"
        #expect(Self.mode(config) == 0o640)
        #expect(
            try String(contentsOfFile: config, encoding: .utf8)
                == String(contentsOfFile: Self.packageRoot.path + "/config/config.example.yaml", encoding: .utf8))

        // The manual page and completions, where man and the shells look.
        #expect(try String(contentsOfFile: destdir + "/opt/tk/share/man/man1/tokenkeeper.1", encoding: .utf8) == page)
        for (path, source) in [
            ("/opt/tk/share/bash-completion/completions/tokenkeeper", "bash/tokenkeeper"),
            ("/opt/tk/share/zsh/site-functions/_tokenkeeper", "zsh/_tokenkeeper"),
            ("/opt/tk/share/fish/vendor_completions.d/tokenkeeper.fish", "fish/tokenkeeper.fish"),
        ] {
            let installed = try? String(contentsOfFile: destdir + path, encoding: .utf8)
            #expect(
                installed != nil
                    && installed == (try? String(contentsOfFile: generated + "/" + source, encoding: .utf8)), "\(path)")
        }

        // The installed binary runs and the example configuration parses.
        let version = try Self.shell([binary, "--version"])
        #expect(version.status == 0 && !version.text.isEmpty)

        // A second install keeps the administrator's configuration.
        try "app:\n  key: \"mine\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let second = try Self.shell(["bash", "systemd/install.sh"], environment: environment)
        #expect(second.status == 0, "\(second.text)")
        #expect(try String(contentsOfFile: config, encoding: .utf8) == "app:\n  key: \"mine\"\n")
        #expect(FileManager.default.fileExists(atPath: destdir + "/etc/tokenkeeper/config.example.yaml"))
    }

    @Test(
        "systemd-analyze verifies the unit and scores its exposure 2.0 or lower",
        .enabled(if: systemdAnalyze != nil, "needs systemd-analyze (apt-get install systemd)"))
    func unitVerifiesAndIsHardened() throws {
        let analyze = try #require(Self.systemdAnalyze)
        // Verify a copy whose ExecStart points at the built binary: verify
        // checks that the command exists.
        let scratch = NSTemporaryDirectory() + "tokenkeeper-unit-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let unit = try String(contentsOfFile: Self.packageRoot.path + "/systemd/tokenkeeper.service", encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/tokenkeeper", with: TokenKeeperBinary.path)
        try unit.write(toFile: scratch + "/tokenkeeper.service", atomically: true, encoding: .utf8)
        let verify = try Self.shell([analyze, "verify", scratch + "/tokenkeeper.service"])
        #expect(verify.status == 0, "\(verify.text)")
        #expect(verify.text.isEmpty, "\(verify.text)")

        let security = try Self.shell([analyze, "security", "--offline=true", "systemd/tokenkeeper.service"])
        let line = try #require(
            security.text.split(separator: "\n").first { $0.contains("Overall exposure level") }, "\(security.text)")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        let value = try #require(score, "\(line)")
        #expect(value <= 2.0, "\(line)")
        let readme = try String(contentsOfFile: Self.packageRoot.path + "/README.md", encoding: .utf8)
        #expect(readme.contains("**\(String(format: "%.1f", value))"), "README should state the score \(value)")
    }
}
