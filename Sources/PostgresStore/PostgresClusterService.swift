public import ServiceLifecycle
import TokenKeeperCore

/// This node's part in the cluster, for as long as the daemon runs: the
/// heartbeat, the live nodes, the LISTEN for changes (see
/// ``PostgresAccountStore/runCluster(node:host:pid:heartbeat:takeover:onLiveNodes:)``).
/// It leaves the `nodes` table on the way out, so the others take over at once.
public struct PostgresClusterService: Service {
    let store: PostgresAccountStore
    let node: String
    let host: String
    let pid: Int32
    let heartbeat: Duration
    let takeover: Duration
    let onLiveNodes: @Sendable (Int) -> Void

    public init(
        store: PostgresAccountStore, node: String, host: String, pid: Int32, heartbeat: Duration, takeover: Duration,
        onLiveNodes: @escaping @Sendable (Int) -> Void
    ) {
        self.store = store
        self.node = node
        self.host = host
        self.pid = pid
        self.heartbeat = heartbeat
        self.takeover = takeover
        self.onLiveNodes = onLiveNodes
    }

    public func run() async throws {
        let task = Task { [store, node, host, pid, heartbeat, takeover, onLiveNodes] in
            await store.runCluster(
                node: node, host: host, pid: pid, heartbeat: heartbeat, takeover: takeover, onLiveNodes: onLiveNodes)
        }
        await withGracefulShutdownHandler {
            await task.value
        } onGracefulShutdown: {
            task.cancel()
        }
    }
}
