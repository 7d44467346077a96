/// What a lease owner's name says about the process that holds it.
///
/// Owners are named `ROLE-PID@HOST/RANDOM` (unique across hosts, restarts and
/// processes); names of another shape (tests, older versions) say nothing,
/// and their leases are judged by their expiry alone.
public struct LeaseOwnerName: Sendable, Equatable {
    public var pid: Int32
    public var host: String

    /// Parses `ROLE-PID@HOST/RANDOM`; nil for any other shape.
    public init?(_ owner: String) {
        guard let at = owner.lastIndex(of: "@"), let slash = owner[at...].firstIndex(of: "/") else { return nil }
        let head = owner[..<at]
        guard let dash = head.lastIndex(of: "-"), let pid = Int32(head[head.index(after: dash)...]), pid > 0 else {
            return nil
        }
        let host = owner[owner.index(after: at)..<slash]
        guard !host.isEmpty else { return nil }
        self.pid = pid
        self.host = String(host)
    }
}
