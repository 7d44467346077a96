import Foundation
import RefreshScheduler
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import TokenKeeperService

/// `apps:`: several apps in one configuration, each with its key, secret,
/// gateway and call budget (issue 17); `app:` alone is the app `default`.
@Suite struct AppsConfigurationTests {
    static let twoApps = """
        gateway:
          url: https://api-sg.aliexpress.com/rest
          timeout_seconds: 20
          authorize_url: https://api-sg.aliexpress.com/oauth/authorize
        refresh:
          max_calls_per_second: 8
        apps:
          ae:
            key: "12345678"
            secret_file: /etc/tokenkeeper/secrets/ae
            redirect_uri: https://example.com/callback/ae
            max_calls_per_second: 10
          lazada_sg:
            key: "100200"
            redirect_uri: https://example.com/callback/lazada_sg
            authorize_url: https://auth.lazada.com/oauth/authorize
            gateway:
              url: https://auth.lazada.com/rest
              timeout_seconds: 15
        """

    @Test func eachAppTakesItsKeysAndTheTopLevelGatewayForTheRest() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", Self.twoApps)
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        #expect(configuration.declaresApps)
        #expect(configuration.apps.map(\.name) == ["ae", "lazada_sg"])
        let ae = try #require(configuration.app(named: "ae"))
        #expect(ae.key == "12345678")
        #expect(ae.secretFile == "/etc/tokenkeeper/secrets/ae")
        #expect(ae.maxCallsPerSecond == 10)
        #expect(ae.gateway.url == "https://api-sg.aliexpress.com/rest")
        #expect(ae.gateway.timeoutSeconds == 20, "the top-level gateway's")
        #expect(ae.gateway.authorizeURL == "https://api-sg.aliexpress.com/oauth/authorize")
        let lazada = try #require(configuration.app(named: "lazada_sg"))
        #expect(lazada.gateway.url == "https://auth.lazada.com/rest")
        #expect(lazada.gateway.timeoutSeconds == 15)
        #expect(lazada.gateway.refreshPath == "/auth/token/refresh")
        #expect(lazada.gateway.authorizeURL == "https://auth.lazada.com/oauth/authorize")
        #expect(lazada.maxCallsPerSecond == nil, "refresh.max_calls_per_second applies")

        let scheduler = configuration.schedulerConfiguration(leaseOwner: "test")
        #expect(scheduler.maxCallsPerSecond(for: "ae") == 10)
        #expect(scheduler.maxCallsPerSecond(for: "lazada_sg") == 8)
    }

    @Test func aSingleAppIsTheAppDefault() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "app:\n  key: \"777\"\n  secret_file: /etc/x\n")
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        #expect(!configuration.declaresApps)
        #expect(configuration.apps.map(\.name) == [.default])
        #expect(configuration.apps.first?.key == "777")
        #expect(configuration.keyName("secret_file", of: configuration.apps[0]) == "app.secret_file")
    }

    @Test func appAndAppsTogetherAreRefusedAsAConfigurationError() async throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", Self.twoApps + "\napp:\n  key: \"999\"\n")
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        }
        #expect(error?.description.contains("app: and apps: are both set") == true)
        #expect(await Commands.checkConfig(configPath: file) == .configuration)
    }

    @Test(arguments: ["Lazada", "lazada sg", "a.b", String(repeating: "a", count: 33)])
    func anAppNameOutsideTheAlphabetIsRefusedByName(_ name: String) throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "apps:\n  \"\(name)\":\n    key: \"1\"\n")
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        }
        #expect(error?.key == "apps.\(name)")
        #expect(error?.problem.contains("is not an app name") == true)
    }

    @Test func aMisspeltKeyOfAnAppIsRefusedWithTheNearestKnownOne() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "apps:\n  ae:\n    key: \"1\"\n    secret_fil: /x\n")
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        }
        #expect(error?.key == "apps.ae.secret_fil")
        #expect(error?.remedy == "did you mean apps.*.secret_file?")
    }

    @Test func anAppWithoutAKeyOrWithAPlainHTTPGatewayIsRefused() throws {
        let scratch = try ScratchDirectory()
        let noKey = scratch.write("a.yaml", "apps:\n  ae:\n    secret_file: /x\n")
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader(environment: [:]).load(explicitPath: noKey) }
        let plain = scratch.write(
            "b.yaml", "apps:\n  ae:\n    key: \"1\"\n    gateway:\n      url: http://gw.example/rest\n")
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: plain)
        }
        #expect(error?.key == "apps.ae.gateway.url")
    }

    @Test func twoAppsMayNotShareACallbackPath() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write(
            "config.yaml",
            """
            callback:
              listen: 127.0.0.1:8901
            apps:
              ae:
                key: "1"
                redirect_uri: https://example.com/callback
              lazada_sg:
                key: "2"
                redirect_uri: https://other.example.com/callback
            """)
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        }
        #expect(error?.key == "apps.lazada_sg.redirect_uri")
        #expect(error?.problem.contains("same path (/callback) as the redirect_uri of app ae") == true)
    }

    @Test func eachAppsSecretComesFromItsCredentialItsFileOrItsVariable() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", Self.twoApps)
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        let ae = try #require(configuration.app(named: "ae"))
        let lazada = try #require(configuration.app(named: "lazada_sg"))
        scratch.write("app_secret_lazada_sg", "lazada-from-credential")
        let environment = [
            "CREDENTIALS_DIRECTORY": scratch.path, "TOKENKEEPER_APPS_LAZADA_SG_SECRET": "lazada-from-env",
            "TOKENKEEPER_APPS_AE_SECRET": "ae-from-env",
        ]
        let fromCredential = try AppSecretLoader(environment: environment).load(for: lazada, in: configuration)
        #expect(fromCredential.secret.exposedValue == "lazada-from-credential")
        #expect(fromCredential.source == .credential(path: scratch.path + "/app_secret_lazada_sg"))
        let fromVariable = try AppSecretLoader(environment: ["TOKENKEEPER_APPS_LAZADA_SG_SECRET": "lazada-from-env"])
            .load(for: lazada, in: configuration)
        #expect(fromVariable.secret.exposedValue == "lazada-from-env")
        #expect(fromVariable.source == .environment(variable: "TOKENKEEPER_APPS_LAZADA_SG_SECRET"))
        // ae names a secret_file that does not exist: the file wins over the variable, and its absence is named.
        let error = #expect(throws: ConfigurationError.self) {
            try AppSecretLoader(environment: environment).load(for: ae, in: configuration)
        }
        #expect(error?.key == "apps.ae.secret_file")
        #expect(error?.description.contains("ae-from-env") == false)
    }

    @Test func aCommandNamingNoAppIsRefusedWhenThereAreSeveral() async throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", Self.twoApps + "\nstorage:\n  directory: \(scratch.path)/storage\n")
        let context = try CommandContext.load(configPath: file, environment: [:]).get()
        #expect(throws: CommandFailure.self) { try context.app(named: nil) }
        #expect(try context.app(named: "lazada_sg").name == "lazada_sg")
        let unknown = #expect(throws: CommandFailure.self) { try context.app(named: "shopee") }
        #expect(unknown?.outcome == .usage)
        #expect(unknown?.message.contains("ae, lazada_sg") == true)
    }
}

@Suite struct AppsSecretNamesTests {
    /// A single-app setup moved to `apps: { default: … }` keeps the unit's
    /// `LoadCredential=app_secret:…` (and TOKENKEEPER_APP_SECRET).
    @Test func theAppDefaultOfAnAppsMapAlsoTakesTheSingleAppsCredential() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "apps:\n  default:\n    key: \"1\"\n  lazada_sg:\n    key: \"2\"\n")
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        scratch.write("app_secret", "the-old-credential")
        let environment = ["CREDENTIALS_DIRECTORY": scratch.path]
        let found = try AppSecretLoader(environment: environment).load(
            for: try #require(configuration.app(named: .default)), in: configuration)
        #expect(found.secret.exposedValue == "the-old-credential")
        #expect(throws: ConfigurationError.self, "another app does not take it") {
            try AppSecretLoader(environment: environment).load(
                for: try #require(configuration.app(named: "lazada_sg")), in: configuration)
        }
    }

    @Test func twoAppsWhoseSecretVariablesWouldBeOneAreRefused() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.write("config.yaml", "apps:\n  lazada-sg:\n    key: \"1\"\n  lazada_sg:\n    key: \"2\"\n")
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: [:]).load(explicitPath: file)
        }
        #expect(error?.problem.contains("TOKENKEEPER_APPS_LAZADA_SG_SECRET") == true)
    }
}
