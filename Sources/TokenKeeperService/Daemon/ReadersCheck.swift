import Logging
import ServiceLifecycle
import TokenKeeperCore

/// Compares tokens.db with keeper.db once after the daemon starts and
/// repairs what differs (a crash between a keeper.db commit and its tokens.db
/// write, a restored or hand-edited file), a stretch at a time, so that
/// neither `READY` nor any refresh waits for a million-row comparison.
/// Retried while it fails.
struct ReadersCheck: Service {
    /// Compares the files, a stretch at a time; returns the rows rewritten.
    let check: @Sendable () async throws -> Int
    let logger: Logger
    /// Returns when the schedule is loaded: the check starts after it.
    let waitUntilReady: @Sendable () async -> Void
    var retryInterval: Duration = .seconds(60)

    func run() async throws {
        await cancelWhenGracefulShutdown { await waitUntilReady() }
        while true {
            do {
                let started = ContinuousClock.now
                let repaired = try await cancelWhenGracefulShutdown { try await check() }
                // The check's pages and buffers, a burst after READY.
                ProcessMemory.returnFreedMemory()
                logger.notice(
                    "tokens.db checked against keeper.db",
                    metadata: ["rewritten": "\(repaired)", "seconds": "\((ContinuousClock.now - started).seconds)"])
                return
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                logger.critical(
                    "tokens.db could not be compared with keeper.db; readers may see old rows until it is; retrying",
                    metadata: ["error": "\(error)"])
            }
            let wait = retryInterval
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            } catch {
                return
            }
        }
    }
}
