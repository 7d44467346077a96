import Foundation
import PostgresStore
import RefreshScheduler
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import TokenKeeperService

/// `storage.backend` and `storage.postgres.*`: what is accepted, what is
/// refused by name, and where the password comes from.
@Suite struct PostgresConfigurationTests {
    let scratch = try! ScratchDirectory()

    func load(_ yaml: String, environment: [String: String] = [:]) throws(ConfigurationError)
        -> TokenKeeperConfiguration
    {
        try ConfigurationLoader(environment: environment).load(explicitPath: scratch.write("config.yaml", yaml))
    }

    static let postgres = """
        storage:
          backend: postgres
          postgres:
            url: postgres://keeper@db.example.com:6432/tokens
            schema: keeper_eu
            tls: verify-full
        """

    @Test func thePostgresKeysAreReadAndTheDefaultIsSQLite() throws {
        #expect(try load("").storage.backend == .sqlite)
        let configuration = try load(Self.postgres)
        #expect(configuration.storage.backend == .postgres)
        #expect(configuration.storage.postgres.url == "postgres://keeper@db.example.com:6432/tokens")
        #expect(configuration.storage.postgres.schema == "keeper_eu")
        #expect(configuration.storage.postgres.tls == "verify-full")
        let settings = try configuration.postgresSettings(environment: [:])
        #expect(settings.host == "db.example.com")
        #expect(settings.port == 6432)
        #expect(settings.username == "keeper")
        #expect(settings.database == "tokens")
        #expect(settings.tls == .verifyFull)
        #expect(settings.password == nil)
        #expect(settings.displayURL == "postgres://keeper@db.example.com:6432/tokens")
        let fromEnvironment = try load(
            "",
            environment: [
                "TOKENKEEPER_STORAGE_BACKEND": "postgres",
                "TOKENKEEPER_STORAGE_POSTGRES_URL": "postgres://keeper@/tokens?host=/run/postgresql",
            ])
        let socket = try fromEnvironment.postgresSettings(environment: [:])
        #expect(socket.host == nil)
        #expect(socket.socketPath == "/run/postgresql/.s.PGSQL.5432")
    }

    @Test func theServerIsAuthenticatedWheneverTLSIsUsedUnlessTheModeSaysOtherwise() throws {
        let remote = "postgres://keeper@db.example.com:5432/tokens"
        let byDefault = try PostgresSettings(url: remote, password: nil)
        #expect(byDefault.tls == .verifyFull && byDefault.unauthenticatedServer == nil)
        let socket = try PostgresSettings(url: "postgres://keeper@/tokens?host=/run/postgresql", password: nil)
        #expect(socket.tls == .disable && socket.unauthenticatedServer == nil, "a socket never leaves the machine")
        #expect(try PostgresSettings(url: remote, password: nil, tls: .require).unauthenticatedServer == nil)
        for mode in [PostgresSettings.TLSMode.disable, .prefer, .requireUnverified] {
            let warning = try PostgresSettings(url: remote, password: nil, tls: mode).unauthenticatedServer
            #expect(warning?.contains(mode.rawValue) == true && warning?.contains("verify-full") == true, "\(mode)")
        }
        let loopback = "postgres://keeper@127.0.0.1:5432/tokens"
        #expect(try PostgresSettings(url: loopback, password: nil, tls: .disable).unauthenticatedServer == nil)
        #expect(
            try PostgresSettings(url: loopback, password: nil, tls: .requireUnverified).unauthenticatedServer != nil)
    }

    @Test func badValuesAreRefusedByName() {
        let cases: [(String, String)] = [
            ("storage:\n  backend: mysql\n", "storage.backend"),
            ("storage:\n  backend: postgres\n", "storage.postgres.url"),
            ("storage:\n  backend: postgres\n  postgres:\n    url: mysql://x@h/db\n", "storage.postgres.url"),
            ("storage:\n  backend: postgres\n  postgres:\n    url: postgres://h:5432/db\n", "names no user"),
            ("storage:\n  backend: postgres\n  postgres:\n    url: postgres://u@h:5432/\n", "names no database"),
            (
                "storage:\n  postgres:\n    url: postgres://u@h/db\n    schema: \"Tokens; DROP\"\n",
                "storage.postgres.schema"
            ),
            ("storage:\n  postgres:\n    tls: maybe\n", "storage.postgres.tls"),
            ("storage:\n  postgres:\n    heartbeat_seconds: 0\n", "storage.postgres.heartbeat_seconds"),
            ("storage:\n  postgres:\n    statement_timeout_seconds: 0\n", "storage.postgres.statement_timeout_seconds"),
        ]
        for (yaml, named) in cases {
            #expect(throws: ConfigurationError.self, "\(yaml)") { try load(yaml) }
            do {
                _ = try load(yaml)
            } catch {
                #expect(error.description.contains(named), "\(error)")
            }
        }
    }

    @Test func aPasswordInTheURLIsRefusedAndNeverRepeated() {
        let yaml = "storage:\n  backend: postgres\n  postgres:\n    url: postgres://keeper:hunter2secret@db/tokens\n"
        do {
            _ = try load(yaml)
            Issue.record("a URL with a password was accepted")
        } catch {
            #expect(error.description.contains("carries a password"))
            #expect(!error.description.contains("hunter2secret"))
        }
    }

    @Test func thePasswordComesFromTheCredentialThenTheFileThenTheEnvironment() throws {
        let file = scratch.write("pg_password", "from-file\n", mode: 0o600)
        let credentials = try ScratchDirectory()
        _ = FileManager.default.createFile(
            atPath: credentials.file("postgres_password"), contents: Data("from-credential".utf8))
        let configuration = try load(Self.postgres + "\n    password_file: \(file)\n")
        let environment = ["TOKENKEEPER_STORAGE_POSTGRES_PASSWORD": "from-environment"]
        let loader = AppSecretLoader(
            environment: environment.merging(["CREDENTIALS_DIRECTORY": credentials.path]) { $1 })
        #expect(try loader.postgresPassword(for: configuration)?.exposedValue == "from-credential")
        #expect(
            try AppSecretLoader(environment: environment).postgresPassword(for: configuration)?.exposedValue
                == "from-file")
        let withoutFile = try load(Self.postgres)
        #expect(
            try AppSecretLoader(environment: environment).postgresPassword(for: withoutFile)?.exposedValue
                == "from-environment")
        // A file other users may read is refused.
        let open = scratch.write("open_password", "x", mode: 0o644)
        let loose = try load(Self.postgres + "\n    password_file: \(open)\n")
        #expect(throws: ConfigurationError.self) { try AppSecretLoader(environment: [:]).postgresPassword(for: loose) }
    }

    @Test func theRateIsSharedByTheLiveNodes() {
        let base = TokenKeeperConfiguration().schedulerConfiguration(leaseOwner: "node-a")
        let share = RateShare(base: base)
        #expect(share.current.maxCallsPerSecond == base.maxCallsPerSecond)
        let halved = share.set(liveNodes: 2)
        #expect(halved?.maxCallsPerSecond == base.maxCallsPerSecond.map { $0 / 2 })
        #expect(share.set(liveNodes: 2) == nil)
        var reloaded = base
        reloaded.maxCallsPerSecond = 30
        #expect(share.adjusted(base: reloaded).maxCallsPerSecond == 15)
        #expect(share.set(liveNodes: 3)?.maxCallsPerSecond == 10)
        reloaded.maxCallsPerSecond = nil
        #expect(share.adjusted(base: reloaded).maxCallsPerSecond == nil)
    }

    @Test func anAppsRateIsReadAsTheSchedulersWithoutCopyingIt() {
        var base = TokenKeeperConfiguration().schedulerConfiguration(leaseOwner: "node-a")
        base.maxCallsPerSecond = 40
        base.maxCallsPerSecondByApp = ["ae": 12, "free": 0]
        let share = RateShare(base: base, reservedForCallback: 0.05)
        _ = share.set(liveNodes: 2)
        for app: AppName in ["ae", "free", "other"] {
            #expect(share.callsPerSecond(for: app) == share.current.maxCallsPerSecond(for: app), "\(app)")
        }
        #expect(share.callsPerSecond(for: "ae") == 12 / 2 * 0.95)
        #expect(share.callsPerSecond(for: "free") == nil, "0: no limit")
    }
}
