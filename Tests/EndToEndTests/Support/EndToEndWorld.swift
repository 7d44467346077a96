import Foundation
import IOPSimulator
import Testing
import TokenKeeperCore

/// One end-to-end scene: a started IOPSimulator on loopback, a scratch
/// directory with a configuration file and an app secret file, and helpers to
/// run the real `tokenkeeper` binary against them.
final class EndToEndWorld: @unchecked Sendable {
    static let appKey = "34567890"

    let simulator: IOPSimulator
    let appSecret: Secret
    let root: URL
    let storage: String
    let configPath: String
    let secretPath: String
    /// Every output of every command run here, for the leak check.
    private var transcripts: [String] = []
    private let lock = NSLock()

    init(settings: [String: String] = [:], configure: (inout GatewayBehavior) -> Void = { _ in }) async throws {
        var random = SystemRandomNumberGenerator()
        appSecret = Secret("e2e-secret-" + String(random.next() as UInt64, radix: 36))
        simulator = IOPSimulator(appKey: Self.appKey, appSecret: appSecret, randomSeed: random.next())
        simulator.updateBehavior(configure)
        let address = try await simulator.start()
        root = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("tokenkeeper-e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        storage = root.appendingPathComponent("storage").path
        secretPath = root.appendingPathComponent("app_secret").path
        configPath = root.appendingPathComponent("config.yaml").path
        try writeSecret(appSecret.exposedValue)
        var values: [String: String] = [
            "gateway.url": address.baseURL, "gateway.timeout_seconds": "10", "app.key": Self.appKey,
            "app.secret_file": secretPath, "app.redirect_uri": "https://example.com/callback",
            "storage.directory": storage, "refresh.retry_initial_seconds": "1", "refresh.retry_max_seconds": "4",
            "refresh.change_poll_seconds": "1", "log.level": "info",
            // The tests' tokens live seconds; a real gateway's, hours.
            "refresh.min_interval_seconds": "1",
        ]
        values.merge(settings) { _, new in new }
        configValues = values
        try writeConfig()
    }

    /// The configuration file's keys and values.
    private(set) var configValues: [String: String] = [:]

    /// Rewrites the configuration file with `changes` on top of what it
    /// holds, less the keys starting with one of `removing`.
    func writeConfig(_ changes: [String: String] = [:], removing: [String] = []) throws {
        configValues = configValues.filter { key, _ in !removing.contains { key.hasPrefix($0) } }
        configValues.merge(changes) { _, new in new }
        try Self.yaml(configValues).write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func writeSecret(_ value: String) throws {
        guard
            FileManager.default.createFile(
                atPath: secretPath, contents: Data(value.utf8), attributes: [.posixPermissions: 0o600])
        else { throw CocoaError(.fileWriteUnknown) }
    }

    /// Nested YAML from dotted keys, to any depth (`apps.ae.gateway.url`).
    static func yaml(_ values: [String: String], indent: String = "") -> String {
        var leaves: [(String, String)] = []
        var sections: [String: [String: String]] = [:]
        for (key, value) in values {
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            if parts.count == 1 {
                leaves.append((parts[0], value))
            } else {
                sections[parts[0], default: [:]][parts[1]] = value
            }
        }
        // A value in brackets is a YAML flow sequence (a list key); the rest are quoted scalars.
        var lines = leaves.sorted { $0.0 < $1.0 }.map { key, value in
            value.hasPrefix("[") ? "\(indent)\(key): \(value)\n" : "\(indent)\(key): \"\(value)\"\n"
        }
        for name in sections.keys.sorted() {
            lines.append("\(indent)\(name):\n" + yaml(sections[name]!, indent: indent + "  "))
        }
        return lines.joined()
    }

    /// Runs a command to completion with this world's configuration.
    func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) async throws
        -> CommandResult
    {
        let result = try await TokenKeeperProcess.run(
            arguments + ["--config", configPath], environment: environment, stdin: stdin)
        record(result.stdout + result.stderr)
        return result
    }

    /// Starts the daemon.
    func startDaemon(environment: [String: String] = [:], launcher: [String] = []) throws -> TokenKeeperProcess {
        try TokenKeeperProcess(["run", "--config", configPath], environment: environment, launcher: launcher)
    }

    /// Stops a daemon with SIGTERM, expects it to exit 0, and keeps what it
    /// printed for ``expectNoSecretsLeaked(in:sourceLocation:)``.
    @discardableResult
    func stop(
        _ daemon: TokenKeeperProcess, timeout: Duration = .seconds(30),
        sourceLocation: SourceLocation = #_sourceLocation
    ) async -> CommandResult {
        daemon.signal(SIGTERM)
        let result = await daemon.wait(timeout: timeout)
        #expect(result.exitCode == 0, "\(result.stderr.suffix(2000))", sourceLocation: sourceLocation)
        record(result.stdout + result.stderr)
        return result
    }

    /// The refresh token of the last rotation the gateway made for a seller,
    /// whether or not its answer reached anyone.
    func lastRotation(of sellerID: String) -> String? {
        simulator.issuedTokens(for: sellerID).last { $0.origin == .rotation }?.refreshToken.exposedValue
    }

    func record(_ text: String) {
        lock.withLock { transcripts.append(text) }
    }

    /// Sellers added to the simulator with tokens seeded, as JSON Lines for `import --file`.
    func seedSellers(
        _ count: Int, prefix: String = "30", accessTokenLifetime: Duration, withAccessToken: Bool = true
    ) throws -> (ids: [String], jsonl: String) {
        var ids: [String] = []
        var lines: [String] = []
        for index in 0..<count {
            let sellerID = prefix + String(format: "%06d", index)
            simulator.addSeller(
                sellerID: sellerID, nick: "shop-\(index)", accessTokenLifetime: accessTokenLifetime,
                refreshTokenValidity: .seconds(3600))
            let pair = try simulator.seedTokens(for: sellerID)
            ids.append(sellerID)
            var object: [String: Any] = [
                "seller_id": sellerID, "refresh_token": pair.refreshToken.exposedValue,
                "refresh_token_valid_time": pair.refreshTokenValidTime.millisecondsSince1970,
                "user_nick": "shop-\(index)",
            ]
            if withAccessToken {
                object["access_token"] = pair.accessToken.exposedValue
                object["expire_time"] = pair.expireTime.millisecondsSince1970
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            lines.append(String(decoding: data, as: UTF8.self))
        }
        return (ids, lines.joined(separator: "\n") + "\n")
    }

    /// Every token the simulator issued and the app secret: none may appear in any output.
    func secrets() -> [String] {
        var values = [appSecret.exposedValue]
        for sellerID in simulator.sellerIDs {
            for pair in simulator.issuedTokens(for: sellerID) {
                values.append(pair.accessToken.exposedValue)
                values.append(pair.refreshToken.exposedValue)
            }
        }
        return values
    }

    /// Fails the test if any output recorded here (plus `more`) contains a
    /// token or the secret (or one of `extraSecrets`: a webhook secret, a state key).
    func expectNoSecretsLeaked(
        in more: [String] = [], extraSecrets: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let texts = lock.withLock { transcripts } + more
        let secrets = secrets() + extraSecrets.filter { !$0.isEmpty }
        #expect(!secrets.isEmpty, sourceLocation: sourceLocation)
        for text in texts {
            for secret in secrets where text.contains(secret) {
                Issue.record(
                    "output contains a token or the secret (fingerprint \(Secret.fingerprint(of: secret)))",
                    sourceLocation: sourceLocation)
            }
        }
    }

    func tearDown() async {
        await simulator.shutdown()
        try? FileManager.default.removeItem(at: root)
    }
}

/// Whether two stored or issued tokens are the same, checked so that a failing
/// test prints fingerprints, never the tokens (test output is read by people
/// and kept by CI).
func expectSameToken(
    _ actual: String?, _ expected: String?, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    let same = actual != nil && actual == expected
    let shown =
        "\(actual.map { Secret($0).description } ?? "none") vs \(expected.map { Secret($0).description } ?? "none")"
    #expect(same, "\(what): \(shown)", sourceLocation: sourceLocation)
}
