import Logging
import PostgresNIO
import Synchronization
import TokenKeeperCore

/// The node's part in the cluster: a heartbeat row, the live nodes, and the
/// change announcements.
extension PostgresAccountStore {
    /// The channel the schema's triggers announce changes on.
    var channel: String { settings.schema + "_changes" }

    /// Joins the cluster as `node` (this process's lease owner) and keeps at
    /// it until the task is cancelled: a heartbeat every `heartbeat`, the
    /// list of live nodes (those heard from within three heartbeats, by the
    /// server's clock), and a `LISTEN` for changes that reconnects by itself.
    /// `onLiveNodes` gets the number of live nodes (this one included) at the
    /// start and whenever it changes: the caller divides the call rate by it.
    /// Leaves the `nodes` table on the way out, so the others take over at once.
    public func runCluster(
        node: String, host: String, pid: Int32, heartbeat: Duration = .seconds(2), takeover: Duration = .seconds(5),
        onLiveNodes: @escaping @Sendable (Int) -> Void
    ) async {
        cluster.withLock {
            $0.node = node
            $0.takeover = takeover
            $0.livenessWindow = heartbeat * 3
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.listen() }
            group.addTask {
                await self.beat(node: node, host: host, pid: pid, every: heartbeat, onLiveNodes: onLiveNodes)
            }
            await group.waitForAll()
        }
        // In a task of its own: this one is cancelled, which would cancel the
        // statement too. Leaving lets the others take over at once.
        await Task { _ = try? await self.run("DELETE FROM \(unescaped: self.s).nodes WHERE node = \(node)") }.value
    }

    private func beat(
        node: String, host: String, pid: Int32, every heartbeat: Duration, onLiveNodes: @Sendable (Int) -> Void
    ) async {
        var reported: Int?
        var failing = false
        let window = (heartbeat * 3).seconds
        while !Task.isCancelled {
            do {
                _ = try await run(
                    """
                    INSERT INTO \(unescaped: s).nodes (node, host, pid) VALUES (\(node), \(host), \(Int(pid)))
                    ON CONFLICT (node) DO UPDATE SET heartbeat_at = now()
                    """)
                let others = try await run(
                    """
                    SELECT node FROM \(unescaped: s).nodes
                    WHERE node <> \(node) AND heartbeat_at > now() - make_interval(secs => \(window))
                    ORDER BY node
                    """
                ).map { try $0[0].decode(String.self) }
                // Rows of nodes gone for an hour are history.
                _ = try await run(
                    "DELETE FROM \(unescaped: s).nodes WHERE heartbeat_at < now() - interval '1 hour'")
                if failing {
                    logger.notice("PostgreSQL heartbeat works again", metadata: ["node": "\(node)"])
                    failing = false
                }
                let changed = cluster.withLock { view in
                    defer { view.others = others }
                    return view.others != others
                }
                if changed {
                    // Every seller's share is computed again.
                    feed.withLock { $0.everything = true }
                    logger.notice(
                        "nodes sharing the sellers", metadata: ["live": "\(others.count + 1)", "others": "\(others)"])
                }
                if reported != others.count + 1 {
                    reported = others.count + 1
                    onLiveNodes(others.count + 1)
                }
            } catch {
                if !failing {
                    logger.warning("PostgreSQL heartbeat failed; retrying", metadata: ["error": "\(error)"])
                    failing = true
                }
            }
            try? await Task.sleep(for: heartbeat)
        }
    }

    /// `LISTEN` on the schema's channel, again and again: after every
    /// (re)connection everything is read once, for what was announced while
    /// no one listened.
    private func listen() async {
        var delay = Duration.milliseconds(200)
        var failing = false
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        feed.withLock { $0.everything = true }
                        if failing {
                            logger.notice("listening for changes again", metadata: ["channel": "\(channel)"])
                            failing = false
                        }
                        delay = .milliseconds(200)
                        let maxPending = settings.maxPendingChanges
                        for try await notification in notifications {
                            feed.withLock { $0.announce(notification.payload, maxPending: maxPending) }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                if !failing {
                    logger.warning(
                        "listening for changes failed; retrying",
                        metadata: ["channel": "\(channel)", "error": "\(PostgresStoreError.from(error))"])
                    failing = true
                }
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
    }

    /// The live nodes as last seen (this one included).
    public var liveNodes: Int { cluster.withLock { $0.liveNodes } }
}
