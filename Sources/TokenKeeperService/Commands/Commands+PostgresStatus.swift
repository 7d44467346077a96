import Foundation
import PostgresStore
import TokenKeeperCore

extension Commands {
    /// `tokenkeeper status` on PostgreSQL: the sellers by status, the nodes
    /// and how long since each was heard from, the earliest expiry.
    static func postgresStatus(context: CommandContext, json: Bool) async throws(CommandFailure) -> CommandOutcome {
        let now = context.wallClock.now()
        let heartbeat = context.configuration.storage.postgres.heartbeatSeconds
        let fleet = try await context.withAnyStore { store throws(CommandFailure) in
            guard let store = store as? PostgresAccountStore else { throw CommandFailure(.failure, "not PostgreSQL") }
            return try await storeCall("reading the status") { try await store.fleet(now: now) }
        }
        let schema = context.configuration.storage.postgres.schema
        func isLive(_ node: PostgresFleet.Node) -> Bool { node.silentSeconds < heartbeat * 3 }
        if json {
            var object: [String: Any] = [
                "backend": "postgres", "schema": schema,
                "accounts": Dictionary(uniqueKeysWithValues: AccountStatus.allCases.map { ($0.rawValue, fleet.counts[$0] ?? 0) }),
                "expired_active": fleet.expired,
                "nodes": fleet.nodes.map {
                    ["node": $0.node, "host": $0.host, "pid": $0.pid, "silent_seconds": $0.silentSeconds, "live": isLive($0)]
                        as [String: Any]
                },
            ]
            if let earliest = fleet.earliestExpiry { object["earliest_expiry"] = earliest.description }
            if let next = fleet.nextRefresh { object["next_refresh"] = next.description }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            Console.out(String(decoding: data, as: UTF8.self))
        } else {
            let live = fleet.nodes.filter(isLive)
            Console.out("backend: PostgreSQL, schema \(schema)")
            Console.out("nodes: \(live.count) live")
            for node in fleet.nodes {
                Console.out(
                    "  \(node.node) on \(node.host): "
                        + (isLive(node) ? "live" : "silent") + String(format: " (heard from %.1f s ago)", node.silentSeconds))
            }
            let counts = AccountStatus.allCases.map { "\(fleet.counts[$0] ?? 0) \($0.rawValue)" }
            Console.out("accounts: " + counts.joined(separator: ", "))
            if fleet.expired > 0 { Console.out("active sellers with an expired access token: \(fleet.expired)") }
            if let earliest = fleet.earliestExpiry { Console.out("earliest access token expiry: \(earliest)") }
            if let next = fleet.nextRefresh { Console.out("next refresh: \(next)") }
        }
        return .success
    }
}
