import Foundation
import Testing

/// `packaging/build-deb.sh`: the Debian package, what it declares and installs,
/// and the binary in it, which must run on a host without a Swift toolchain.
@Suite("Debian package")
struct PackageTests {
    static let dpkgDeb = ["/usr/bin/dpkg-deb", "/bin/dpkg-deb"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// The release build takes 8 to 20 minutes of both cores: run beside the
    /// timing-sensitive suites it would starve them, so it runs on its own
    /// when asked (`.ci/run` does, after the suite).
    static let requested = ProcessInfo.processInfo.environment["TOKENKEEPER_PACKAGE_TEST"] == "1"

    static let expectedPaths = [
        "./usr/bin/tokenkeeper", "./lib/systemd/system/tokenkeeper.service", "./usr/lib/sysusers.d/tokenkeeper.conf",
        "./usr/lib/tmpfiles.d/tokenkeeper.conf", "./etc/tokenkeeper/config.yaml",
        "./usr/share/doc/tokenkeeper/README.md", "./usr/share/doc/tokenkeeper/OPERATIONS.md",
        "./usr/share/doc/tokenkeeper/DATABASE.md", "./usr/share/doc/tokenkeeper/copyright",
        "./usr/share/doc/tokenkeeper/changelog.gz", "./usr/share/man/man1/tokenkeeper.1.gz",
        "./usr/share/bash-completion/completions/tokenkeeper", "./usr/share/zsh/vendor-completions/_tokenkeeper",
        "./usr/share/fish/vendor_completions.d/tokenkeeper.fish", "./usr/share/lintian/overrides/tokenkeeper",
    ]

    /// Who the test's packages say answers for them.
    static let maintainer = (name: "tokenkeeper package test", email: "package-test@example.com")

    /// Runs a command in the package root to completion. It waits by polling
    /// rather than blocking: the release build takes tens of minutes, and a
    /// blocked thread would be one of the two cooperative threads the other
    /// suites share on a 2-core machine. TOKENKEEPER_* variables are not passed
    /// on (TOKENKEEPER_BINARY would make the script package a test build).
    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in env.keys where key.hasPrefix("TOKENKEEPER_") || key == "CREDENTIALS_DIRECTORY" {
            env[key] = nil
        }
        process.environment = env.merging(environment) { _, new in new }
        process.currentDirectoryURL = InstallTests.packageRoot
        process.standardInput = FileHandle.nullDevice
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = OutputCollector(out)
        let stderr = OutputCollector(err)
        while process.isRunning {
            try? await Task.sleep(for: .milliseconds(200))
        }
        process.waitUntilExit()
        let outputDeadline = ContinuousClock.now + .seconds(5)
        while !(stdout.isFinished && stderr.isFinished) && ContinuousClock.now < outputDeadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return CommandResult(exitCode: process.terminationStatus, stdout: stdout.text, stderr: stderr.text)
    }

    @Test(
        "build-deb.sh builds a package that declares its C libraries, installs the unit and a conffile, and whose binary runs without Swift",
        .enabled(
            if: requested, "a 20-minute release build: TOKENKEEPER_PACKAGE_TEST=1 swift test --filter PackageTests"),
        .enabled(if: dpkgDeb != nil, "needs dpkg-deb (apt-get install dpkg) to build and read the package"),
        .enabled(if: getuid() == 0, "piuparts builds a chroot: run as root (CI does)"),
        // The release build with the Swift runtime linked in takes 8 to 25 minutes on 2 cores.
        .timeLimit(.minutes(90)))
    func buildsARunnablePackage() async throws {
        let dpkgDeb = try #require(Self.dpkgDeb)
        let scratch = NSTemporaryDirectory() + "tokenkeeper-deb-\(UUID().uuidString.prefix(8))"
        let out = scratch + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let build = try await Self.run(
            ["bash", "packaging/build-deb.sh", "--out", out],
            environment: ["DEBFULLNAME": Self.maintainer.name, "DEBEMAIL": Self.maintainer.email])
        try #require(build.exitCode == 0, "\(String(describing: build).suffix(4000))")
        let debs = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasSuffix(".deb") }
        let name = try #require(debs.count == 1 ? debs.first : nil, "expected one .deb in \(out): \(debs)")
        let nameParts = name.dropLast(".deb".count).split(separator: "_").map(String.init)
        try #require(nameParts.count == 3 && nameParts[0] == "tokenkeeper", "\(name)")
        let version = nameParts[1]
        let deb = out + "/" + name

        let info = try await Self.run([dpkgDeb, "--info", deb])
        #expect(info.exitCode == 0, "\(info)")
        let fields = info.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let depends = try #require(fields.first { $0.hasPrefix("Depends:") }, "\(info.stdout)")
        #expect(depends.contains("libsqlite3-0"), "\(depends)")
        #expect(depends.contains("procps"), "the unit's ExecReload= runs /bin/kill: \(depends)")
        #expect(!depends.lowercased().contains("swift"), "\(depends)")
        #expect(fields.contains("Package: tokenkeeper"))
        #expect(fields.contains("Version: \(version)"))
        #expect(fields.contains("Architecture: \(nameParts[2])"))
        #expect(fields.contains("Maintainer: \(Self.maintainer.name) <\(Self.maintainer.email)>"), "\(info.stdout)")
        #expect(depends.contains("adduser"), "postinst calls adduser where systemd-sysusers is missing: \(depends)")

        let contents = try await Self.run([dpkgDeb, "--contents", deb])
        #expect(contents.exitCode == 0, "\(contents)")
        let listed = contents.stdout.split(separator: "\n")
        for path in Self.expectedPaths {
            #expect(listed.contains { $0.hasSuffix(" " + path) }, "the package lacks \(path)")
        }
        #expect(listed.contains { $0.hasPrefix("-rwxr-xr-x root/root") && $0.hasSuffix(" ./usr/bin/tokenkeeper") })

        let control = scratch + "/DEBIAN"
        let extractControl = try await Self.run([dpkgDeb, "--control", deb, control])
        #expect(extractControl.exitCode == 0, "\(extractControl)")
        let conffiles = try String(contentsOfFile: control + "/conffiles", encoding: .utf8)
        #expect(conffiles.split(separator: "\n").contains("/etc/tokenkeeper/config.yaml"), "\(conffiles)")
        let postinst = try String(contentsOfFile: control + "/postinst", encoding: .utf8)
        for forbidden in ["systemctl start", "systemctl enable", "--now", "deb-systemd-invoke start"] {
            #expect(!postinst.contains(forbidden), "postinst must never start or enable the service: \(forbidden)")
        }
        // Debian's way: deb-systemd-helper and deb-systemd-invoke; systemctl
        // only to reload systemd.
        for script in ["postinst", "prerm", "postrm"] {
            let text = try String(contentsOfFile: control + "/" + script, encoding: .utf8)
            let call = /(^|[;&|]|\bif|\bthen)\s*systemctl\s/
            for line in text.split(separator: "\n") where line.contains(call) {
                #expect(line.contains("daemon-reload"), "\(script) calls systemctl: \(line)")
            }
            #expect(text.contains("deb-systemd-"), "\(script) uses neither deb-systemd-helper nor deb-systemd-invoke")
        }

        let root = scratch + "/root"
        let extract = try await Self.run([dpkgDeb, "-x", deb, root])
        #expect(extract.exitCode == 0, "\(extract)")
        let unit = try String(contentsOfFile: root + "/lib/systemd/system/tokenkeeper.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/bin/tokenkeeper run"))
        #expect(!unit.contains("/usr/local"))
        #expect(
            try String(contentsOfFile: root + "/etc/tokenkeeper/config.yaml", encoding: .utf8)
                == String(
                    contentsOfFile: InstallTests.packageRoot.path + "/config/config.example.yaml", encoding: .utf8))

        let copyright = try String(contentsOfFile: root + "/usr/share/doc/tokenkeeper/copyright", encoding: .utf8)
        #expect(copyright.hasPrefix("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"))
        let changelog = try await Self.run(["gzip", "-dc", root + "/usr/share/doc/tokenkeeper/changelog.gz"])
        #expect(changelog.stdout.hasPrefix("tokenkeeper (\(version)) unstable; urgency=medium\n"), "\(changelog)")
        #expect(changelog.stdout.contains(" -- \(Self.maintainer.name) <\(Self.maintainer.email)>  "))

        let binary = root + "/usr/bin/tokenkeeper"
        let ldd = try await Self.run(["ldd", binary])
        #expect(ldd.exitCode == 0, "\(ldd)")
        for library in ["libswift", "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime", "not found"] {
            #expect(!ldd.stdout.contains(library), "the packaged binary needs \(library):\n\(ldd.stdout)")
        }
        #expect(ldd.stdout.contains("libsqlite3"), "\(ldd.stdout)")

        let versionRun = try await Self.run([binary, "--version"])
        #expect(versionRun.exitCode == 0, "\(versionRun)")
        #expect(versionRun.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == version)

        let storage = scratch + "/storage"
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        let config = scratch + "/config.yaml"
        try EndToEndWorld.yaml(["app.key": EndToEndWorld.appKey, "storage.directory": storage, "log.level": "info"])
            .write(toFile: config, atomically: true, encoding: .utf8)
        let secret = "package-test-secret-\(UUID().uuidString.prefix(8))"
        let check = try await Self.run(
            [binary, "check-config", "--config", config], environment: ["TOKENKEEPER_APP_SECRET": secret])
        #expect(check.exitCode == 0, "\(check)")
        #expect(check.stdout.contains("TOKENKEEPER_APP_SECRET"), "\(check.stdout)")
        #expect(!(check.stdout + check.stderr).contains(secret))

        // systemd/install.sh makes the same manual page and completions from
        // the same binary (its own run of packaging/manual-and-completions.sh).
        let destdir = scratch + "/install"
        let install = try await Self.run(
            ["bash", "systemd/install.sh"],
            environment: ["DESTDIR": destdir, "PREFIX": "/usr", "TOKENKEEPER_BINARY": binary])
        #expect(install.exitCode == 0, "\(install)")
        let packagedPage = try await Self.run(["gzip", "-dc", root + "/usr/share/man/man1/tokenkeeper.1.gz"])
        let installedPage = try? String(contentsOfFile: destdir + "/usr/share/man/man1/tokenkeeper.1", encoding: .utf8)
        #expect(packagedPage.stdout.contains(".It Em check-config"), "\(packagedPage.stdout.prefix(300))")
        #expect(installedPage == packagedPage.stdout, "install.sh's manual page differs from the package's")
        for (installed, packaged) in [
            (
                "/usr/share/bash-completion/completions/tokenkeeper",
                "/usr/share/bash-completion/completions/tokenkeeper"
            ),
            ("/usr/share/zsh/site-functions/_tokenkeeper", "/usr/share/zsh/vendor-completions/_tokenkeeper"),
            (
                "/usr/share/fish/vendor_completions.d/tokenkeeper.fish",
                "/usr/share/fish/vendor_completions.d/tokenkeeper.fish"
            ),
        ] {
            let ours = try? String(contentsOfFile: destdir + installed, encoding: .utf8)
            #expect(
                ours != nil && ours == (try? String(contentsOfFile: root + packaged, encoding: .utf8)), "\(installed)")
        }

        // Debian's own tools: lintian, and piuparts installing, upgrading
        // from the previous release's package and purging in a chroot, where
        // the manual and bash's completion are checked on the installed package.
        let debianCheck = try await Self.run(["bash", "packaging/check-deb.sh", deb])
        print(debianCheck.stdout)
        #expect(debianCheck.exitCode == 0, "\(String(describing: debianCheck).suffix(8000))")
        for line in [
            "lintian: no error, no warning that is not overridden", "Setting up tokenkeeper (\(version))",
            "PASS: Installation and purging test.", "PASS: Installation, upgrade and purging tests.",
            "tokenkeeper: man tokenkeeper shows all ", "tokenkeeper: tokenkeeper <TAB> in bash offers ",
            "tokenkeeper: the upgrade kept the edited config.yaml and the store",
        ] {
            #expect(debianCheck.stdout.contains(line), "check-deb.sh did not say \(line)")
        }
    }

    @Test("packaging/copyright has a stanza for every package that Package.resolved pins")
    func copyrightNamesEveryDependency() throws {
        let root = InstallTests.packageRoot.path
        let resolved = try Data(contentsOf: URL(fileURLWithPath: root + "/Package.resolved"))
        struct Resolved: Decodable {
            struct Pin: Decodable { var location: String }
            var pins: [Pin]
        }
        let pins = try JSONDecoder().decode(Resolved.self, from: resolved).pins
        #expect(pins.count > 10, "\(pins.count) pins")
        let copyright = try String(contentsOfFile: root + "/packaging/copyright", encoding: .utf8)
        for pin in pins {
            // SwiftPM checks a package out under the last part of its URL.
            var name = URL(string: pin.location)?.lastPathComponent ?? pin.location
            if name.hasSuffix(".git") { name.removeLast(4) }
            #expect(copyright.contains(".build/checkouts/\(name)/"), "packaging/copyright does not name \(name)")
        }
    }

    @Test(
        "build-deb.sh names a real Maintainer or refuses to build (exit 78), before building anything",
        .enabled(if: dpkgDeb != nil, "build-deb.sh first checks that dpkg-deb is there"))
    func refusesWithoutARealMaintainer() async throws {
        let out = NSTemporaryDirectory() + "tokenkeeper-deb-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: out) }
        // No DEBFULLNAME/DEBEMAIL and no git configuration to fall back on.
        let missing = try await Self.run([
            "env", "-u", "DEBFULLNAME", "-u", "DEBEMAIL", "GIT_DIR=/nonexistent", "GIT_CONFIG_GLOBAL=/dev/null",
            "GIT_CONFIG_NOSYSTEM=1", "bash", "packaging/build-deb.sh", "--out", out,
        ])
        #expect(missing.exitCode == 78, "\(missing)")
        #expect(missing.stderr.contains("set DEBFULLNAME and DEBEMAIL"), "\(missing.stderr)")
        for (name, email) in [("Jane", "root@localhost"), ("Jane", "jane@localhost"), ("root", "jane@example.com")] {
            let refused = try await Self.run(
                ["bash", "packaging/build-deb.sh", "--out", out], environment: ["DEBFULLNAME": name, "DEBEMAIL": email])
            #expect(refused.exitCode == 78, "\(name) <\(email)>: \(refused)")
            let named = name == "root" ? "DEBFULLNAME 'root'" : "DEBEMAIL '\(email)'"
            #expect(refused.stderr.contains(named), "\(refused.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out), "nothing was built")
    }
}
