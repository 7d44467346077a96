import Foundation
import IOPGateway
import Logging
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What every command starts from: the validated configuration, and on demand
/// the app secret and the gateway settings.
struct CommandContext {
    let configuration: TokenKeeperConfiguration
    let environment: [String: String]

    /// Loads the configuration, or prints why not and says how to exit.
    static func load(configPath: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        -> Result<CommandContext, CommandFailure>
    {
        do {
            let configuration = try ConfigurationLoader(environment: environment).load(explicitPath: configPath)
            return .success(CommandContext(configuration: configuration, environment: environment))
        } catch {
            return .failure(CommandFailure(.configuration, error.description))
        }
    }

    /// The wall clock every part reads. `TOKENKEEPER_TEST_CLOCK_OFFSET_SECONDS`
    /// moves it, for tests of a skewed or stepped clock (libfaketime also moves
    /// the clocks Swift's timers sleep on, which stalls them).
    var wallClock: any WallClock {
        guard let text = environment["TOKENKEEPER_TEST_CLOCK_OFFSET_SECONDS"], let seconds = Int64(text) else {
            return SystemWallClock()
        }
        return OffsetWallClock(offset: .seconds(seconds))
    }

    /// The secret of `app`.
    func appSecret(for app: TokenKeeperConfiguration.AppSettings) throws(CommandFailure) -> Secret {
        do {
            return try AppSecretLoader(environment: environment).load(for: app, in: configuration).secret
        } catch {
            throw CommandFailure(.configuration, error.description)
        }
    }

    /// The app `name` names (`--app`), or, when none is named, the only app;
    /// a configuration of several apps needs a name.
    func app(named name: AppName?) throws(CommandFailure) -> TokenKeeperConfiguration.AppSettings {
        let apps = configuration.apps
        if let name {
            guard let app = configuration.app(named: name) else {
                throw CommandFailure(
                    .usage,
                    "--app \(name): no such app in the configuration (apps: \(apps.map(\.name.rawValue).joined(separator: ", ")))"
                )
            }
            return app
        }
        guard apps.count == 1, let only = apps.first else {
            throw CommandFailure(
                .usage,
                "the configuration has several apps (\(apps.map(\.name.rawValue).joined(separator: ", "))): "
                    + "name one with --app")
        }
        return only
    }

    /// The webhook's signing secret; nil when no webhook is configured.
    func webhookSecret() throws(CommandFailure) -> Secret? {
        do {
            return try AppSecretLoader(environment: environment).webhookSecret(for: configuration)
        } catch {
            throw CommandFailure(.configuration, error.description)
        }
    }

    /// The gateway settings of `app`, including its key and secret.
    func gatewayConfiguration(for app: TokenKeeperConfiguration.AppSettings) throws(CommandFailure)
        -> GatewayConfiguration
    {
        guard !app.key.isEmpty else {
            let key = configuration.keyName("key", of: app)
            throw CommandFailure(
                .configuration,
                ConfigurationError(
                    key: key, problem: "is not set",
                    remedy: "set it in \(configuration.sourcePath ?? ConfigurationLoader.defaultPath)"
                        + (configuration.declaresApps ? "" : " or TOKENKEEPER_APP_KEY")
                ).description)
        }
        return GatewayConfiguration(
            app, concurrency: configuration.refresh.concurrency, appSecret: try appSecret(for: app))
    }

    /// The gateway settings of `app`, validated, so that a bad URL is a
    /// configuration error naming the key.
    func validatedGatewayConfiguration(for app: TokenKeeperConfiguration.AppSettings) throws(CommandFailure)
        -> GatewayConfiguration
    {
        let settings = try gatewayConfiguration(for: app)
        do throws(GatewayFailure) {
            try settings.validate()
        } catch {
            let prefix = configuration.declaresApps ? "apps.\(app.name).gateway" : "gateway"
            throw CommandFailure(.configuration, "configuration error: \(prefix): \(error.message)")
        }
        return settings
    }

    /// The gateway settings of every app, validated, by app name.
    func gatewayConfigurations() throws(CommandFailure) -> [AppName: GatewayConfiguration] {
        var all: [AppName: GatewayConfiguration] = [:]
        for app in configuration.apps {
            all[app.name] = try validatedGatewayConfiguration(for: app)
        }
        return all
    }
}

extension GatewayConfiguration {
    init(_ app: TokenKeeperConfiguration.AppSettings, concurrency: Int, appSecret: Secret) {
        let gateway = app.gateway
        self.init(
            baseURL: gateway.url, appKey: app.key, appSecret: appSecret,
            refreshPath: gateway.refreshPath, createPath: gateway.createPath,
            // Connecting is part of the request: never longer than the whole.
            connectTimeout: .milliseconds(Int64(min(gateway.connectTimeoutSeconds, gateway.timeoutSeconds) * 1000)),
            requestTimeout: .milliseconds(Int64(gateway.timeoutSeconds * 1000)),
            // One connection per call the scheduler may have under way.
            maxConnections: concurrency)
    }
}

/// A command that could not do its work: what to print on stderr and the exit code.
struct CommandFailure: Error, CustomStringConvertible {
    var outcome: CommandOutcome
    var message: String

    init(_ outcome: CommandOutcome, _ message: String) {
        self.outcome = outcome
        self.message = message
    }

    var description: String { message }

    /// The exit code a gateway failure deserves: 78 when our configuration is
    /// wrong, 69 when the gateway could not be reached, 1 otherwise.
    static func gateway(_ failure: GatewayFailure, doing action: String) -> CommandFailure {
        switch failure.failureClass {
        case .configuration:
            return CommandFailure(
                .configuration,
                "\(action) failed: the gateway rejected our configuration: \(failure)"
                    + ConfigurationHint.forCode(failure.code))
        case .transient, .throttled:
            if failure.isUnknownCode {
                return CommandFailure(.failure, "\(action) was refused by the gateway: \(failure)")
            }
            return CommandFailure(
                .unavailable, "\(action) failed: the gateway is unreachable or failing: \(failure); try again later")
        case .accountRejected:
            return CommandFailure(.failure, "\(action) was refused by the gateway: \(failure)")
        }
    }
}

/// What to do about each configuration-class gateway error.
enum ConfigurationHint {
    static func forCode(_ code: String) -> String {
        switch code {
        case IOPFailureCode.incompleteSignature:
            "; the signature did not match: check the app secret (secret_file) belongs to the app's key"
        case IOPFailureCode.invalidAppKey, IOPFailureCode.missingAppKey:
            "; check the app's key"
        case IOPFailureCode.illegalTimestamp:
            "; the local clock is off: synchronise it (timedatectl, chrony)"
        case IOPFailureCode.invalidApiPath:
            "; check the app's gateway url and refresh_path/create_path"
        default:
            ""
        }
    }
}

/// Standard output and error for commands: results on stdout, diagnostics on stderr.
enum Console {
    static func out(_ text: String) {
        writeAll(STDOUT_FILENO, text + "\n")
    }

    /// Writes `text` as it is, with no newline added.
    static func outRaw(_ text: String) {
        writeAll(STDOUT_FILENO, text)
    }

    static func error(_ text: String) {
        writeAll(STDERR_FILENO, "tokenkeeper: " + text + "\n")
    }

    private static func writeAll(_ descriptor: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

extension Commands {
    /// Runs a command body: a thrown ``CommandFailure`` is printed and becomes the exit code.
    static func execute(
        configPath: String?, _ body: (CommandContext) async throws(CommandFailure) -> CommandOutcome
    ) async -> CommandOutcome {
        switch CommandContext.load(configPath: configPath) {
        case .failure(let failure):
            Console.error(failure.message)
            return failure.outcome
        case .success(let context):
            do {
                return try await body(context)
            } catch {
                Console.error(error.message)
                return error.outcome
            }
        }
    }
}

/// The system's wall clock moved by a fixed offset (tests of clock skew).
struct OffsetWallClock: WallClock {
    let offset: Duration
    private let system = SystemWallClock()

    func now() -> Timestamp { system.now() + offset }
}
