import Foundation
import IOPSimulator
import Logging
import RefreshScheduler
import SQLiteStore
import ServiceLifecycle
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Commands {
    /// `tokenkeeper demo`: the real daemon against two IOPSimulators on
    /// loopback, one app of each marketplace: an AliExpress app with a few
    /// sellers and a Lazada app with a cross-border account, their tokens
    /// living tens of seconds. One AliExpress seller's refresh token is
    /// revoked along the way and turns `reauth_required`.
    public static func demo(duration: Double?, sellers: Int, directory: String?) async -> CommandOutcome {
        let environment = ProcessInfo.processInfo.environment
        LogSetup.bootstrapOnce(level: .warning, environment: environment)
        do throws(CommandFailure) {
            return try await DemoRun(sellerCount: sellers, duration: duration, directory: directory).run(environment)
        } catch {
            Console.error(error.message)
            return error.outcome
        }
    }
}

struct DemoRun {
    let sellerCount: Int
    let duration: Double?
    let directory: String?

    static let appKey = "500500"
    static let lazadaKey = "600600"
    static let lazadaApp: AppName = "lazada_sg"
    /// The Lazada account: one token, a seller in each of three countries.
    static let lazadaVentures = [
        VentureSeller(country: "sg", sellerID: "3100001", userID: "7100001", shortCode: "SG31A01"),
        VentureSeller(country: "th", sellerID: "3100002", userID: "7100002", shortCode: "TH31A02"),
        VentureSeller(country: "my", sellerID: "3100003", userID: "7100003", shortCode: "MY31A03"),
    ]
    static let accessTokenLifetime: Duration = .seconds(20)
    static let revokeAfter: Duration = .seconds(25)
    /// After the revocation: time for the daemon to meet it, then the "click".
    static let clickDelay: Duration = .seconds(8)

    func run(_ environment: [String: String]) async throws(CommandFailure) -> CommandOutcome {
        var random = SystemRandomNumberGenerator()
        func newSecret() -> Secret {
            Secret((0..<4).map { _ in String(random.next() as UInt64, radix: 16) }.joined())
        }
        let secret = newSecret()
        let lazadaSecret = newSecret()
        let simulator = IOPSimulator(appKey: Self.appKey, appSecret: secret, randomSeed: random.next())
        let lazada = IOPSimulator(
            appKey: Self.lazadaKey, appSecret: lazadaSecret, randomSeed: random.next(), answerShape: .lazada)
        let addresses: (SimulatorAddress, SimulatorAddress)
        do throws(IOPSimulatorError) {
            addresses = (try await simulator.start(), try await lazada.start())
        } catch {
            await simulator.shutdown()
            throw CommandFailure(.failure, "cannot start the gateway simulators: \(error)")
        }
        let outcome: CommandOutcome
        do throws(CommandFailure) {
            outcome = try await run(
                simulator: simulator, baseURL: addresses.0.baseURL, secret: secret,
                lazada: (lazada, addresses.1.baseURL, lazadaSecret), environment)
        } catch {
            await simulator.shutdown()
            await lazada.shutdown()
            throw error
        }
        await simulator.shutdown()
        await lazada.shutdown()
        return outcome
    }

    private func run(
        simulator: IOPSimulator, baseURL: String, secret: Secret,
        lazada: (simulator: IOPSimulator, baseURL: String, secret: Secret), _ environment: [String: String]
    ) async throws(CommandFailure) -> CommandOutcome {
        let storage: String
        if let directory { storage = directory } else { storage = try Self.scratchDirectory() }
        var configuration = TokenKeeperConfiguration()
        configuration.gateway.url = baseURL
        configuration.gateway.timeoutSeconds = 5
        configuration.storage.directory = storage
        configuration.refresh.retryInitialSeconds = 1
        configuration.refresh.retryMaxSeconds = 5
        configuration.refresh.changePollSeconds = 1
        configuration.refresh.shutdownGraceSeconds = 6
        // The demo's tokens live tens of seconds; a real gateway's, hours.
        configuration.refresh.minIntervalSeconds = 1
        // The re-authorization loop: the callback listener on a free loopback port.
        let callbackPort = try Self.freeLoopbackPort()
        configuration.callback.listen = "127.0.0.1:\(callbackPort)"
        // Two apps, one of each marketplace, each on its own gateway.
        var aliExpress = TokenKeeperConfiguration.AppSettings(name: Self.aliExpressApp, gateway: configuration.gateway)
        aliExpress.key = Self.appKey
        aliExpress.redirectURI = "http://127.0.0.1:\(callbackPort)/callback/ae"
        var lazadaApp = TokenKeeperConfiguration.AppSettings(name: Self.lazadaApp, gateway: configuration.gateway)
        lazadaApp.key = Self.lazadaKey
        lazadaApp.redirectURI = "http://127.0.0.1:\(callbackPort)/callback/lazada_sg"
        lazadaApp.gateway.url = lazada.baseURL
        configuration.declaredApps = [aliExpress, lazadaApp]
        var demoEnvironment = environment
        demoEnvironment["TOKENKEEPER_APPS_AE_SECRET"] = secret.exposedValue
        demoEnvironment["TOKENKEEPER_APPS_LAZADA_SG_SECRET"] = lazada.secret.exposedValue
        demoEnvironment.removeValue(forKey: "CREDENTIALS_DIRECTORY")
        demoEnvironment.removeValue(forKey: "NOTIFY_SOCKET")
        let context = CommandContext(configuration: configuration, environment: demoEnvironment)

        let narrator = DemoNarrator()
        narrator.say(
            "tokenkeeper demo: two apps, an AliExpress gateway simulator on \(baseURL) (app ae) and a Lazada one "
                + "on \(lazada.baseURL) (app lazada_sg); storage in \(storage)")
        let sellerIDs = (1...sellerCount).map { "2100\(String(format: "%05d", $0))" }
        for (index, sellerID) in sellerIDs.enumerated() {
            simulator.addSeller(
                sellerID: sellerID, nick: "demo-shop-\(index + 1)",
                accessTokenLifetime: Self.accessTokenLifetime + .seconds(index), refreshTokenValidity: .seconds(3600))
            let code: String
            do throws(IOPSimulatorError) {
                code = try simulator.issueAuthorizationCode(for: sellerID)
            } catch {
                throw CommandFailure(.failure, "the simulator refused a code for \(sellerID): \(error)")
            }
            let account = try await Commands.enroll(
                code: code, app: try context.app(named: Self.aliExpressApp), context: context)
            narrator.say(
                "enrolled seller \(account.sellerID) of app ae with 'add --app ae --code': access token for "
                    + "\(20 + index) s, first refresh \(narrator.relative(account.nextRefreshAt))")
        }
        try await enrollLazadaAccount(lazada.simulator, context: context, narrator: narrator)
        let victim = AccountKey(app: Self.aliExpressApp, sellerID: sellerIDs[1])
        narrator.say("")
        narrator.say("Readers use tokens.db; try this in another terminal while the demo runs:")
        narrator.say(
            "  sqlite3 -readonly -box \(storage)/tokens.db \"SELECT app, seller_id, country, status, "
                + "datetime(expire_time/1000,'unixepoch') AS expires FROM seller_tokens\"")
        narrator.say("(seller_tokens has a row for each country the Lazada account sells in, all with its one token)")
        narrator.say(
            "In \(Int(Self.revokeAfter.seconds)) s the simulator revokes seller \(victim)'s refresh token, as when a "
                + "seller withdraws the authorization; watch it turn reauth_required, the event with its link, "
                + "the seller's simulated click through the callback, and the seller active again.")
        narrator.say(
            duration.map { "The demo stops after \(Int($0)) s (Ctrl-C stops it sooner)." } ?? "Ctrl-C stops it.")
        narrator.say("")

        var daemon = Daemon(context: context, configPath: nil)
        daemon.observer = { event in narrator.report(event) }
        let script = DemoScript(
            simulator: simulator, victim: victim, duration: duration.map { .milliseconds(Int64($0 * 1000)) },
            narrator: narrator, configuration: configuration)
        daemon.extraServices = { store in
            [
                .init(
                    service: script.withStore(store), successTerminationBehavior: .gracefullyShutdownGroup,
                    serviceName: "demo")
            ]
        }
        let outcome = try await daemon.run()
        narrator.say("")
        let accounts = try await context.withAnyStore { store throws(CommandFailure) in
            try await storeCall("listing accounts") { try await store.allAccounts() }
        }
        narrator.say(AccountListing.table(accounts, now: SystemWallClock().now()))
        for (name, gateway) in [("AliExpress", simulator), ("Lazada", lazada.simulator)] {
            let counters = gateway.counters
            narrator.say(
                "\(name) simulator: \(counters.rotations) rotations handed out, \(counters.refreshTokenReuses) reuses "
                    + "of a rotated refresh token, \(counters.overlappingRefreshes) overlapping refreshes of one seller"
            )
        }
        narrator.say("The databases stay in \(storage) (delete it when done).")
        return outcome
    }

    static let aliExpressApp: AppName = "ae"

    /// The Lazada app's cross-border account, enrolled from an authorization
    /// code as `add --app lazada_sg --code` does.
    private func enrollLazadaAccount(
        _ lazada: IOPSimulator, context: CommandContext, narrator: DemoNarrator
    ) async throws(CommandFailure) {
        lazada.addSeller(
            .crossBorderAccount(
                ventures: Self.lazadaVentures, accessTokenLifetime: Self.accessTokenLifetime + .seconds(10),
                refreshTokenValidity: .seconds(3600)))
        let code: String
        do throws(IOPSimulatorError) {
            code = try lazada.issueAuthorizationCode(for: Self.lazadaVentures[0].sellerID)
        } catch {
            throw CommandFailure(.failure, "the Lazada simulator refused a code: \(error)")
        }
        let account = try await Commands.enroll(
            code: code, app: try context.app(named: Self.lazadaApp), context: context)
        let countries = Self.lazadaVentures.map(\.country).joined(separator: ", ")
        narrator.say(
            "enrolled the Lazada cross-border account \(account.sellerID) of app lazada_sg (sellers in \(countries), "
                + "one token) with 'add --app lazada_sg --code'")
    }

    /// A loopback port free at this moment.
    static func freeLoopbackPort() throws(CommandFailure) -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard descriptor >= 0, bound else {
            throw CommandFailure(.failure, "cannot find a free loopback port: \(String(cString: strerror(errno)))")
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func scratchDirectory() throws(CommandFailure) -> String {
        let base = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/tokenkeeper-demo-XXXXXX"
        var template = Array(base.utf8CString)
        guard let made = mkdtemp(&template) else {
            throw CommandFailure(.failure, "cannot create a scratch directory: \(String(cString: strerror(errno)))")
        }
        let path = String(cString: made)
        // Readers in the group may look into the demo's storage, as in production.
        chmod(path, 0o750)
        return path
    }
}
