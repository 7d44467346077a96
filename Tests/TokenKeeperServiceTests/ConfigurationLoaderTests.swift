import Foundation
import RefreshScheduler
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import TokenKeeperService

@Suite struct ConfigurationLoaderTests {
    @Test func readsEveryKeyFromTheYAMLFile() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write(
            "config.yaml",
            """
            gateway:
              url: http://127.0.0.1:9999/rest
              timeout_seconds: 12
            app:
              key: "12345678"
              secret_file: /etc/x
            storage:
              directory: /tmp/somewhere
            refresh:
              concurrency: 7
              max_calls_per_second: 0
              remaining_fraction: 0.3
            log:
              level: debug
            """)
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        #expect(configuration.gateway.url == "http://127.0.0.1:9999/rest")
        #expect(configuration.gateway.timeoutSeconds == 12)
        #expect(configuration.app.key == "12345678")
        #expect(configuration.app.secretFile == "/etc/x")
        #expect(configuration.storage.directory == "/tmp/somewhere")
        #expect(configuration.refresh.concurrency == 7)
        #expect(configuration.refresh.maxCallsPerSecond == 0)
        #expect(configuration.refresh.remainingFraction == 0.3)
        #expect(configuration.refresh.retryInitialSeconds == 5, "unset keys keep their defaults")
        #expect(configuration.log.level == "debug")
        #expect(configuration.sourcePath == file)
    }

    @Test func environmentVariablesOverrideTheFileKeyByKey() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "gateway:\n  url: https://a.example/rest\napp:\n  key: fromfile\n")
        let configuration = try ConfigurationLoader(environment: [
            "TOKENKEEPER_GATEWAY_URL": "https://b.example/rest",
            "TOKENKEEPER_REFRESH_CONCURRENCY": "9",
        ]).load(explicitPath: file)
        #expect(configuration.gateway.url == "https://b.example/rest")
        #expect(configuration.refresh.concurrency == 9)
        #expect(configuration.app.key == "fromfile")
    }

    @Test func configFileComesFromTheEnvironmentWhenNoOptionIsGiven() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("c.yaml", "app:\n  key: viaenv\n")
        let configuration = try ConfigurationLoader(environment: ["TOKENKEEPER_CONFIG": file]).load()
        #expect(configuration.app.key == "viaenv")
    }

    @Test func unknownKeyIsRefusedWithASuggestion() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "refresh:\n  concurency: 3\n")
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        }
        #expect(error?.key == "refresh.concurency")
        #expect(error?.description.contains("did you mean refresh.concurrency?") == true)
    }

    @Test func valueOfTheWrongTypeNamesTheKeyAndItsSource() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "refresh:\n  concurrency: many\n")
        let fromFile = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        }
        #expect(fromFile?.key == "refresh.concurrency")
        #expect(fromFile?.problem.contains("'many'") == true)

        let fromEnvironment = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: ["TOKENKEEPER_GATEWAY_TIMEOUT_SECONDS": "soon"]).load(
                explicitPath: file.replacingOccurrences(of: "config.yaml", with: "missing.yaml"))
        }
        #expect(fromEnvironment?.key.hasSuffix(".yaml") == true, "an explicit missing file is reported first")

        let scratch2 = try ScratchDirectory()
        let empty = scratch2.write("empty.yaml", "")
        let viaEnvironment = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: ["TOKENKEEPER_GATEWAY_TIMEOUT_SECONDS": "soon"]).load(
                explicitPath: empty)
        }
        #expect(viaEnvironment?.key == "gateway.timeout_seconds (from TOKENKEEPER_GATEWAY_TIMEOUT_SECONDS)")
    }

    @Test func outOfRangeValuesAreRefusedByKey() throws {
        let cases: [(String, String)] = [
            ("refresh:\n  remaining_fraction: 1.5\n", "refresh.remaining_fraction"),
            ("refresh:\n  jitter_fraction: 0.3\n", "refresh.jitter_fraction"),
            ("refresh:\n  concurrency: 0\n", "refresh.concurrency"),
            ("refresh:\n  retry_max_seconds: 1\n", "refresh.retry_max_seconds"),
            ("refresh:\n  change_poll_seconds: 30\n", "refresh.change_poll_seconds"),
            ("gateway:\n  url: ftp://x\n", "gateway.url"),
            // In clear to a host on the network.
            ("gateway:\n  url: http://api-sg.aliexpress.com/rest\n", "gateway.url"),
            ("gateway:\n  url: http://127.evil.example/rest\n", "gateway.url"),
            ("gateway:\n  url: http://10.0.0.5/rest\n", "gateway.url"),
            ("gateway:\n  refresh_path: auth/token/refresh\n", "gateway.refresh_path"),
            ("log:\n  level: loud\n", "log.level"),
            // Edges that would spin, stall or crash the daemon.
            ("gateway:\n  timeout_seconds: 100000\n", "gateway.timeout_seconds"),
            ("gateway:\n  timeout_seconds: 0\n", "gateway.timeout_seconds"),
            ("refresh:\n  max_calls_per_second: 0.0001\n", "refresh.max_calls_per_second"),
            ("refresh:\n  retry_initial_seconds: 0\n", "refresh.retry_initial_seconds"),
            ("refresh:\n  min_interval_seconds: 0\n", "refresh.min_interval_seconds"),
            ("refresh:\n  shutdown_grace_seconds: 8\n", "refresh.shutdown_grace_seconds"),
            ("refresh:\n  configuration_probe_seconds: 1e9\n", "refresh.configuration_probe_seconds"),
            ("refresh:\n  mass_rejection:\n    fraction: 2\n", "refresh.mass_rejection.fraction"),
            ("refresh:\n  mass_rejection:\n    sellers: 0\n", "refresh.mass_rejection.sellers"),
            ("storage:\n  event_retention_days: 0\n", "storage.event_retention_days"),
        ]
        for (yaml, key) in cases {
            let scratch = try ScratchDirectory()
            let file = scratch.write("config.yaml", yaml)
            let error = #expect(throws: ConfigurationError.self) {
                try ConfigurationLoader(environment: [:]).load(explicitPath: file)
            }
            #expect(error?.key == key, "\(yaml)")
        }
    }

    @Test func missingExplicitFileAndBrokenYAMLAreNamed() throws {
        let scratch = try ScratchDirectory()
        let missing = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: scratch.path + "/nope.yaml")
        }
        #expect(missing?.key == scratch.path + "/nope.yaml")
        #expect(missing?.problem.contains("does not exist") == true)

        let broken = scratch.write("broken.yaml", "gateway:\n  url: [unclosed\n")
        let syntax = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: broken)
        }
        #expect(syntax?.key == broken)
        #expect(syntax?.problem.contains("not valid YAML") == true)

        let list = scratch.write("list.yaml", "- a\n- b\n")
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader(environment: [:]).load(explicitPath: list) }
    }

    @Test func shutdownGraceDefaultsToTheTimeoutPlusAMarginAndNestedKeysAreRead() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write(
            "config.yaml",
            "gateway:\n  timeout_seconds: 20\nrefresh:\n  mass_rejection:\n    sellers: 25\n    hold_hours: 1\n")
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        #expect(configuration.refresh.effectiveShutdownGraceSeconds(timeout: 20) == 30)
        #expect(configuration.refresh.massRejectionSellers == 25)
        #expect(configuration.refresh.massRejectionHoldHours == 1)
        let settings = configuration.schedulerConfiguration(leaseOwner: "x")
        #expect(settings.shutdownGracePeriod == .seconds(30))
        #expect(settings.massRejection.hold == .seconds(3600))
        let typo = scratch.write("typo.yaml", "refresh:\n  mass_rejection:\n    seller: 3\n")
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: typo)
        }
        #expect(error?.key == "refresh.mass_rejection.seller")
    }

    @Test func theExampleConfigurationLoadsAsItIs() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/config.example.yaml").path
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: example)
        #expect(configuration.refresh.minIntervalSeconds == 60)
        #expect(configuration.refresh.massRejectionSellers == 10)
    }

    @Test func defaultPathMayBeAbsentButIsReadWhenPresent() throws {
        let scratch = try ScratchDirectory()
        let absent = ConfigurationLoader(
            environment: ["TOKENKEEPER_APP_KEY": "k"], fallbackPath: scratch.path + "/none.yaml")
        let configuration = try absent.load()
        #expect(configuration.app.key == "k")
        #expect(configuration.sourcePath == nil)

        let present = scratch.write("config.yaml", "app:\n  key: from-file\n")
        let fromFile = try ConfigurationLoader(environment: [:], fallbackPath: present).load()
        #expect(fromFile.app.key == "from-file")
        #expect(fromFile.sourcePath == present)
    }
}

@Suite struct AppSecretLoaderTests {
    @Test func secretFileMustNotBeReadableByOthers() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.write("app_secret", "s3cr3t-value\n", mode: 0o644)
        var configuration = TokenKeeperConfiguration()
        configuration.app.secretFile = path
        let error = #expect(throws: ConfigurationError.self) {
            try AppSecretLoader(environment: [:]).load(for: configuration)
        }
        #expect(error?.key == "app.secret_file")
        #expect(error?.remedy?.contains("chmod 600") == true)
        #expect(error?.description.contains("s3cr3t-value") == false)

        chmod(path, 0o600)
        let (secret, source) = try AppSecretLoader(environment: [:]).load(for: configuration)
        #expect(secret.exposedValue == "s3cr3t-value", "the trailing newline is trimmed")
        #expect(source == .file(key: "app.secret_file", path: path))
    }

    @Test func systemdCredentialComesFirstThenFileThenEnvironment() throws {
        let scratch = try ScratchDirectory()
        scratch.write("app_secret", "from-credential")
        let file = scratch.write("file_secret", "from-file")
        var configuration = TokenKeeperConfiguration()
        configuration.app.secretFile = file
        let all = ["CREDENTIALS_DIRECTORY": scratch.path, "TOKENKEEPER_APP_SECRET": "from-env"]
        #expect(try AppSecretLoader(environment: all).load(for: configuration).secret.exposedValue == "from-credential")
        #expect(
            try AppSecretLoader(environment: ["TOKENKEEPER_APP_SECRET": "from-env"]).load(for: configuration).secret
                .exposedValue == "from-file")
        configuration.app.secretFile = nil
        #expect(
            try AppSecretLoader(environment: ["TOKENKEEPER_APP_SECRET": "from-env"]).load(for: configuration).secret
                .exposedValue == "from-env")
    }

    @Test func noSecretAnywhereSaysWhereToPutIt() {
        let error = #expect(throws: ConfigurationError.self) {
            try AppSecretLoader(environment: [:]).load(for: TokenKeeperConfiguration())
        }
        #expect(error?.description.contains("LoadCredential") == true)
    }

    @Test func emptySecretFileIsRefused() throws {
        let scratch = try ScratchDirectory()
        var configuration = TokenKeeperConfiguration()
        configuration.app.secretFile = scratch.write("app_secret", "\n")
        #expect(throws: ConfigurationError.self) { try AppSecretLoader(environment: [:]).load(for: configuration) }
    }
}
