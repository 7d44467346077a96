import HeapModule
import TokenKeeperCore

/// Every account's next deadline: a min-heap ordered by due time, with lazy
/// invalidation. Rescheduling an account pushes a new entry and records the
/// new deadline in `current`; the old heap entry stays behind and is
/// discarded when it reaches the top, because its deadline is no longer the
/// account's. So rescheduling is O(log n) with no search in the heap, and a
/// compaction rebuilds the heap when stale entries outnumber live ones.
///
/// Memory counts at a million accounts: an entry is a deadline and a seller
/// id (24 bytes), `current` maps the id to a deadline (24 bytes a slot).
struct DeadlineQueue {
    private struct Entry: Comparable {
        var due: Int64
        var sellerID: String

        static func < (lhs: Entry, rhs: Entry) -> Bool {
            (lhs.due, lhs.sellerID) < (rhs.due, rhs.sellerID)
        }
    }

    private var heap = Heap<Entry>()
    /// The live deadline of each account, in milliseconds.
    private var current: [String: Int64] = [:]

    /// Accounts with a deadline.
    var count: Int { current.count }

    /// Heap entries, live and stale (for tests of compaction).
    var storedEntries: Int { heap.count }

    func due(of sellerID: String) -> Timestamp? {
        current[sellerID].map(Timestamp.init(millisecondsSince1970:))
    }

    func contains(_ sellerID: String) -> Bool {
        current[sellerID] != nil
    }

    /// Replaces the whole schedule in O(n).
    mutating func load(_ accounts: some Sequence<ScheduledAccount>) {
        current.removeAll(keepingCapacity: true)
        // Sized once: growing a million-slot dictionary rehashes it ~20 times.
        current.reserveCapacity(accounts.underestimatedCount)
        var entries: [Entry] = []
        entries.reserveCapacity(accounts.underestimatedCount)
        for account in accounts {
            guard let due = account.due?.millisecondsSince1970 else { continue }
            if let existing = current[account.sellerID], existing <= due { continue }
            current[account.sellerID] = due
            entries.append(Entry(due: due, sellerID: account.sellerID))
        }
        heap = Heap(entries)
    }

    /// Sets the account's deadline, replacing the one it had.
    mutating func schedule(_ sellerID: String, at due: Timestamp) {
        let milliseconds = due.millisecondsSince1970
        if current[sellerID] == milliseconds { return }
        current[sellerID] = milliseconds
        heap.insert(Entry(due: milliseconds, sellerID: sellerID))
        compactIfNeeded()
    }

    /// Removes the account's deadline; its heap entry is discarded later.
    mutating func remove(_ sellerID: String) {
        current.removeValue(forKey: sellerID)
    }

    /// The earliest live deadline. An entry is live while its deadline is
    /// still the account's (a second entry with the same deadline, left by
    /// a remove and a re-add, is found stale once the first is popped).
    mutating func peek() -> (sellerID: String, due: Timestamp)? {
        while let top = heap.min {
            if current[top.sellerID] == top.due {
                return (top.sellerID, Timestamp(millisecondsSince1970: top.due))
            }
            _ = heap.popMin()
        }
        return nil
    }

    /// Removes and returns the earliest deadline if it is at or before `now`.
    mutating func popDue(notAfter now: Timestamp) -> (sellerID: String, due: Timestamp)? {
        guard let top = peek(), top.due <= now else { return nil }
        _ = heap.popMin()
        current.removeValue(forKey: top.sellerID)
        return top
    }

    /// Moves every deadline by `offset` in O(n): the wall clock was stepped.
    mutating func shiftAll(by offset: Duration) {
        let milliseconds = offset.wholeMilliseconds
        for key in Array(current.keys) { current[key]! &+= milliseconds }
        rebuildHeap()
    }

    private mutating func rebuildHeap() {
        heap = Heap(current.map { Entry(due: $0.value, sellerID: $0.key) })
    }

    /// How long before its deadline each account must be allowed to start
    /// so that, at `callsPerSecond`, every account starts by its deadline:
    /// the most work any stretch of the schedule holds beyond its length,
    /// max over i > j of ((i - j) / rate - (d[i] - d[j])) over the sorted
    /// deadlines. Zero when the calls fit. O(n log n).
    func requiredLead(callsPerSecond: Double) -> Duration {
        guard current.count > 1, callsPerSecond > 0 else { return .zero }
        let deadlines = current.values.sorted()
        let spacingMs = 1000 / callsPerSecond
        var lowest = Double.infinity
        var leadMs = 0.0
        for (index, deadline) in deadlines.enumerated() {
            // x[i] = i * spacing - d[i]; the lead is the largest rise of x.
            let x = Double(index) * spacingMs - Double(deadline)
            lowest = min(lowest, x)
            leadMs = max(leadMs, x - lowest)
        }
        return .milliseconds(Int64(leadMs.rounded(.up)))
    }

    private mutating func compactIfNeeded() {
        guard heap.count > 1024, heap.count > 2 * current.count else { return }
        rebuildHeap()
    }
}
