import Foundation
import PostgresStore

/// Who runs on the store now, as `status` shows it: the daemon holding
/// keeper.db's lock, or the nodes heard from on PostgreSQL.
struct StorePresence: Sendable {
    /// Where the sellers are, for the first line.
    var storage: String
    /// The `daemon:` line.
    var daemon: String
    /// Lines under it (one per node).
    var details: [String] = []
    /// `status --json`'s `daemon` object.
    var json: @Sendable () -> [String: Any]

    init(directory: String, daemon probe: StorageLock.Probe) {
        storage = directory
        switch probe {
        case .running(let pid):
            daemon = "running" + (pid.map { " (pid \($0))" } ?? "")
            json = { ["running": true, "pid": pid.map { Int($0) } ?? NSNull()] }
        case .notRunning:
            daemon = "not running"
            json = { ["running": false] }
        case .unknown(let why):
            daemon = "unknown (\(why))"
            json = { ["running": NSNull(), "error": why] }
        }
    }

    init(postgres location: String, nodes: [PostgresNode], heartbeatSeconds: Double) {
        storage = "PostgreSQL " + location
        @Sendable func isLive(_ node: PostgresNode) -> Bool { node.silentSeconds < heartbeatSeconds * 3 }
        let live = nodes.filter(isLive)
        daemon = live.isEmpty ? "not running (no node heard from)" : "running on \(live.count) live node(s)"
        details = nodes.map { node in
            "  \(node.node) on \(node.host): " + (isLive(node) ? "live" : "silent")
                + String(format: " (heard from %.1f s ago)", node.silentSeconds)
        }
        json = {
            [
                "running": !live.isEmpty,
                "nodes": nodes.map {
                    [
                        "node": $0.node, "host": $0.host, "pid": $0.pid, "silent_seconds": $0.silentSeconds,
                        "live": isLive($0),
                    ]
                        as [String: Any]
                },
            ]
        }
    }
}
