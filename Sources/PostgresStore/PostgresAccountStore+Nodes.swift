import PostgresNIO
import TokenKeeperCore

/// One row of the schema's `nodes` table: a daemon sharing the sellers.
public struct PostgresNode: Sendable, Equatable {
    public var node: String
    public var host: String
    public var pid: Int
    /// Seconds since its last heartbeat, by the server's clock.
    public var silentSeconds: Double
}

extension PostgresAccountStore {
    /// Every node of the `nodes` table, the most recently heard from first
    /// (rows of nodes gone for an hour are deleted by the live ones).
    public func nodes() async throws -> [PostgresNode] {
        try await run(
            """
            SELECT node, host, pid, extract(epoch FROM now() - heartbeat_at)::float8
            FROM \(unescaped: s).nodes ORDER BY heartbeat_at DESC
            """
        ).map {
            PostgresNode(
                node: try $0[0].decode(String.self), host: try $0[1].decode(String.self),
                pid: try $0[2].decode(Int.self),
                silentSeconds: try $0[3].decode(Double.self))
        }
    }
}
