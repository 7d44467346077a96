import IOPGateway
import Logging
import RefreshScheduler
import ServiceLifecycle
import TokenKeeperCore
import UnixSignals

/// SIGHUP: reads the configuration and the app secret again, hands the
/// gateway and the scheduler their new settings and retries the accounts held
/// back at once. `storage.*` and `log.*` need a restart.
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
                    configuration: reloaded.schedulerConfiguration(leaseOwner: leaseOwner, environment: environment))
                if reloaded.storage != running.storage || reloaded.log != running.log {
                    logger.warning(
                        "storage.* and log.* changes take effect at the next restart",
                        metadata: ["storage": "\(reloaded.storage.directory)", "log_level": "\(reloaded.log.level)"])
                }
                await scheduler.retryHeldBack()
            } catch {
                logger.error("reload refused; keeping the running configuration", metadata: ["error": "\(error.message)"])
            }
        }
    }
}
