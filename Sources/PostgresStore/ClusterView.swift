public import TokenKeeperCore

/// Which live node a seller belongs to, by rendezvous (highest random weight)
/// hashing of node and account (app and seller id): each node computes the
/// same order of nodes for a seller from the same list of live nodes,
/// without talking to the others. The first node schedules the seller at its deadline; the node
/// ranked `r` after it, `r` × `takeover` later (never past half the time left
/// to expiry), so that a dead node's sellers are refreshed by the next one
/// at once, and a live node's refresh (announced by NOTIFY) moves the
/// others' deadlines on before they wake.
///
/// Why this and not "every node wakes for every seller, the first claimer
/// wins": that costs every node a lease transaction for every refresh of
/// every seller (N-fold writes on PostgreSQL at a million sellers); here a
/// seller wakes one node, and the lease (fenced by the refresh token) is the
/// safety when two do.
public struct ClusterView: Sendable, Equatable {
    /// This node's id (its lease owner), nil for a command that refreshes
    /// nothing on a schedule.
    public var node: String?
    /// The other live nodes.
    public var others: [String] = []
    public var takeover: Duration
    /// A node heard from within this long is alive (three heartbeats): its
    /// leases are never taken over, expired or not.
    public var livenessWindow: Duration = .seconds(6)

    public init(node: String?, others: [String] = [], takeover: Duration) {
        self.node = node
        self.others = others
        self.takeover = takeover
    }

    /// How many nodes share the work (this one included).
    public var liveNodes: Int { others.count + 1 }

    /// How many live nodes come before this one for `account`.
    public func rank(of account: AccountKey) -> Int {
        guard let node, !others.isEmpty else { return 0 }
        let own = Self.weight(node: node, account: account)
        return others.reduce(0) { count, other in
            let weight = Self.weight(node: other, account: account)
            return count + (weight > own || (weight == own && other < node) ? 1 : 0)
        }
    }

    /// The deadline this node keeps for an account whose stored deadline is
    /// `due` and whose access token expires at `expireTime`.
    public func deadline(account: AccountKey, due: Timestamp, expireTime: Timestamp?) -> Timestamp {
        let rank = rank(of: account)
        guard rank > 0 else { return due }
        var delay = takeover * rank
        if let expireTime, expireTime > due {
            // Never later than halfway (and for later ranks, further) to expiry.
            let bound = (expireTime - due) * Double(rank) / Double(rank + 1)
            delay = min(delay, bound)
        }
        return due + delay
    }

    /// FNV-1a, 64 bits: stable across processes and builds (Swift's Hasher
    /// is seeded per process). A zero byte ends the node and the app, so
    /// that no two different triples hash the same bytes.
    static func weight(node: String, account: AccountKey) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        node.utf8.forEach(mix)
        mix(0)
        account.app.rawValue.utf8.forEach(mix)
        mix(0)
        account.sellerID.utf8.forEach(mix)
        // A final mix, so that ids differing in their last byte spread well.
        hash ^= hash >> 33
        hash = hash &* 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return hash
    }
}
