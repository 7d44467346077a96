import Logging
import ServiceLifecycle
import TokenKeeperCore

/// Keeps `events` from growing without bound: deletes events older than
/// `storage.event_retention_days` shortly after start and then every hour,
/// in small batches so that no refresh's commit waits for long.
struct EventPruner: Service {
    let store: any FleetReporting
    let retention: Duration
    let logger: Logger
    var firstDelay: Duration = .seconds(30)
    var interval: Duration = .seconds(3600)

    func run() async throws {
        var delay = firstDelay
        while true {
            do {
                let wait = delay
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            } catch {
                return  // stopping
            }
            if Task.isCancelled || Task.isShuttingDownGracefully { return }
            do {
                let deleted = try await store.pruneEvents(before: SystemWallClock().now() - retention, batchSize: 5000)
                if deleted > 0 {
                    logger.info(
                        "old events pruned",
                        metadata: ["deleted": "\(deleted)", "retention_days": "\(retention.seconds / 86_400)"])
                }
            } catch {
                logger.warning("pruning old events failed; tried again later", metadata: ["error": "\(error)"])
            }
            delay = interval
        }
    }
}
