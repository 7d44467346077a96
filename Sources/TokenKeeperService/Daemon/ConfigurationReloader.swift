import IOPGateway
import Logging
import RefreshScheduler
import ServiceLifecycle
import TokenKeeperCore
import UnixSignals

/// SIGHUP: reads the configuration and the app secret again, hands the
/// gateway and the scheduler their new settings and retries the accounts held
/// back at once. `storage.*`, `log.*`, `notify.*`, `callback.*`, `metrics.*`
/// and `app.redirect_uri` need a restart.
struct ConfigurationReloader: Service {
    /// The configuration the daemon started with.
    let running: TokenKeeperConfiguration
    /// The scheduler's lease owner, which a reload keeps.
    let leaseOwner: String
    let configPath: String?
    let environment: [String: String]
    let client: IOPGatewayClient
    let scheduler: RefreshScheduler
    let notifier: SystemdNotifier
    let logger: Logger
    /// Turns the reloaded scheduler settings into this node's (on
    /// PostgreSQL: its share of the call rate).
    var adjust: @Sendable (RefreshSchedulerConfiguration) -> RefreshSchedulerConfiguration = { $0 }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            await reload()
        }
    }

    func reload() async {
        notifier.reloading()
        defer { notifier.send(["READY=1"]) }
        logger.notice("SIGHUP: reloading the configuration and the app secret")
        switch CommandContext.load(configPath: configPath, environment: environment) {
        case .failure(let failure):
            logger.error("reload refused; keeping the running configuration", metadata: ["error": "\(failure.message)"])
        case .success(let context):
            do throws(CommandFailure) {
                let settings = try context.gatewayConfiguration()
                do throws(GatewayFailure) {
                    try settings.validate()
                } catch {
                    throw CommandFailure(.configuration, "gateway: \(error.message)")
                }
                client.update(configuration: settings)
                logger.notice(
                    "reloaded gateway settings and app secret",
                    metadata: ["app_secret": "\(settings.appSecret.fingerprint)", "app_key": "\(settings.appKey)"])
                let reloaded = context.configuration
                await scheduler.update(
                    configuration: adjust(
                        reloaded.schedulerConfiguration(leaseOwner: leaseOwner, environment: environment)))
                // The notifier's channels, the listeners and the links they
                // make are built once at start.
                let needRestart = [
                    ("storage.*", reloaded.storage != running.storage), ("log.*", reloaded.log != running.log),
                    ("notify.*", reloaded.notify != running.notify),
                    ("callback.*", reloaded.callback != running.callback),
                    ("metrics.*", reloaded.metrics != running.metrics),
                    ("app.redirect_uri", reloaded.app.redirectURI != running.app.redirectURI),
                ].filter(\.1).map(\.0)
                if !needRestart.isEmpty {
                    logger.warning(
                        "these changes take effect at the next restart (systemctl restart tokenkeeper)",
                        metadata: ["keys": "\(needRestart.joined(separator: ", "))"])
                }
                await scheduler.retryHeldBack()
            } catch {
                logger.error(
                    "reload refused; keeping the running configuration", metadata: ["error": "\(error.message)"])
            }
        }
    }
}
