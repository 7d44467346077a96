import HeapModule
import TokenKeeperCore

/// Every account's next deadline: a min-heap ordered by due time, with lazy
/// invalidation. Rescheduling an account pushes a new entry and records the
/// new deadline in `current`; the old heap entry stays behind and is
/// discarded when it reaches the top, because its deadline is no longer the
/// account's. So rescheduling is O(log n) with no search in the heap, and a
/// compaction rebuilds the heap when stale entries outnumber live ones.
///
/// Several apps share the one heap, but each app calls the gateway at its
/// own pace and may be held back alone (throttled, its configuration
/// rejected). A due account whose app cannot call yet is *set aside*: taken
/// off the heap into its app's line of due accounts, kept in deadline order,
/// while `current` keeps its deadline, so it stays
/// scheduled (``contains(_:)``, ``due(of:)``, ``count``) and a change of its
/// deadline or its removal makes the set-aside entry stale exactly as it
/// makes a heap entry stale. The heap's top then moves on to the other apps'
/// accounts, and the held app's accounts wait in line without being pushed
/// back onto the heap at every wake-up (which, for a crowd waiting for the
/// rate limit, would cost a push per account per call).
///
/// Memory counts at a million accounts: inside, an account is its seller id
/// and its app's number in a table of the apps seen (``Key``, 24 bytes, not
/// the 32 of an ``AccountKey`` with the app's name); an entry is a deadline
/// and a key (32 bytes), `current` maps the key to a deadline (32 bytes a slot).
struct DeadlineQueue {
    /// An ``AccountKey`` with its app as a number in ``apps``.
    private struct Key: Hashable {
        var app: UInt32
        var sellerID: String
    }

    private struct Entry: Comparable {
        var due: Int64
        var key: Key

        /// Ties of one deadline go by seller id, then by app.
        static func < (lhs: Entry, rhs: Entry) -> Bool {
            if lhs.due != rhs.due { return lhs.due < rhs.due }
            // Bytes, not characters, for equality too: one strict order.
            if lhs.key.sellerID.utf8.elementsEqual(rhs.key.sellerID.utf8) { return lhs.key.app < rhs.key.app }
            return lhs.key.sellerID.utf8.lexicographicallyPrecedes(rhs.key.sellerID.utf8)
        }
    }

    /// The apps seen, in the order first seen: a ``Key``'s `app` is an index here.
    private var apps: [AppName] = []
    private var appNumbers: [AppName: UInt32] = [:]

    /// The key of `account`, giving its app a number if it is new.
    private mutating func intern(_ account: AccountKey) -> Key {
        // Most fleets have one app: its name is compared, not hashed.
        if apps.count == 1, apps[0] == account.app { return Key(app: 0, sellerID: account.sellerID) }
        if let number = appNumbers[account.app] { return Key(app: number, sellerID: account.sellerID) }
        let number = UInt32(apps.count)
        apps.append(account.app)
        appNumbers[account.app] = number
        return Key(app: number, sellerID: account.sellerID)
    }

    /// The key of `account` if its app was seen (else it has no deadline).
    private func lookUp(_ account: AccountKey) -> Key? {
        appNumbers[account.app].map { Key(app: $0, sellerID: account.sellerID) }
    }

    private func accountKey(_ key: Key) -> AccountKey {
        AccountKey(app: apps[Int(key.app)], sellerID: key.sellerID)
    }

    /// One app's accounts set aside, earliest deadline first (an array read
    /// from `head`, so that taking the first is O(1)).
    private struct Line {
        var entries: [Entry] = []
        var head = 0

        var first: Entry? { head < entries.count ? entries[head] : nil }

        /// Entries come off the heap in deadline order and are appended; one
        /// that comes later with an earlier deadline (a retry due in seconds,
        /// a forced refresh) goes to its place rather than behind the rest.
        mutating func insert(_ entry: Entry) {
            guard let last = entries.last, head < entries.count, entry < last else {
                entries.append(entry)
                return
            }
            var low = head
            var high = entries.count
            while low < high {
                let middle = (low + high) / 2
                if entries[middle] < entry { low = middle + 1 } else { high = middle }
            }
            entries.insert(entry, at: low)
        }

        mutating func removeFirst() {
            head += 1
            if head == entries.count {
                entries.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 1024, head * 2 > entries.count {
                entries.removeFirst(head)
                head = 0
            }
        }
    }

    private var heap = Heap<Entry>()
    /// The live deadline of each account, in milliseconds (set-aside ones included).
    private var current: [Key: Int64] = [:]
    private var setAside: [AppName: Line] = [:]

    /// Accounts with a deadline (set-aside ones included).
    var count: Int { current.count }

    /// Counts the changes of the live deadlines (`current`): a lead planned
    /// at one revision still holds while it is unchanged.
    private(set) var revision: UInt64 = 0

    /// Heap entries, live and stale (for tests of compaction).
    var storedEntries: Int { heap.count }

    func due(of account: AccountKey) -> Timestamp? {
        lookUp(account).flatMap { current[$0] }.map(Timestamp.init(millisecondsSince1970:))
    }

    func contains(_ account: AccountKey) -> Bool {
        lookUp(account).map { current[$0] != nil } ?? false
    }

    /// Replaces the whole schedule in O(n).
    mutating func load(_ accounts: some Sequence<ScheduledAccount>) {
        revision &+= 1
        current.removeAll(keepingCapacity: true)
        setAside.removeAll()
        // Sized once: growing a million-slot dictionary rehashes it ~20 times.
        current.reserveCapacity(accounts.underestimatedCount)
        // An eighth to spare (4 MB at a million): the heap grows by the
        // sellers added while the daemon runs, and its first insert past the
        // capacity would copy it into twice the room (64 MB at a million).
        var entries = ContiguousArray<Entry>()
        entries.reserveCapacity(accounts.underestimatedCount + accounts.underestimatedCount / 8)
        for account in accounts {
            guard let due = account.due?.millisecondsSince1970 else { continue }
            let key = intern(account.key)
            // One hash of the seller id for each: a store lists each account
            // once, so the put-back below is for a store that did not.
            if let existing = current.updateValue(due, forKey: key), existing <= due {
                current[key] = existing
                continue
            }
            entries.append(Entry(due: due, key: key))
        }
        heap = Heap(entries)
    }

    /// Sets the account's deadline, replacing the one it had.
    mutating func schedule(_ account: AccountKey, at due: Timestamp) {
        let key = intern(account)
        let milliseconds = due.millisecondsSince1970
        if current[key] == milliseconds { return }
        revision &+= 1
        current[key] = milliseconds
        heap.insert(Entry(due: milliseconds, key: key))
        compactIfNeeded()
    }

    /// Removes the account's deadline; its heap or set-aside entry is discarded later.
    mutating func remove(_ account: AccountKey) {
        if let key = lookUp(account), current.removeValue(forKey: key) != nil { revision &+= 1 }
    }

    /// The earliest live deadline on the heap (set-aside accounts are not on
    /// it). An entry is live while its deadline is still the account's (a
    /// second entry with the same deadline, left by a remove and a re-add, is
    /// found stale once the first is taken).
    mutating func peek() -> (key: AccountKey, due: Timestamp)? {
        while let top = heap.min {
            if current[top.key] == top.due {
                return (accountKey(top.key), Timestamp(millisecondsSince1970: top.due))
            }
            _ = heap.popMin()
        }
        return nil
    }

    /// Removes and returns the earliest deadline on the heap if it is at or before `now`.
    mutating func popDue(notAfter now: Timestamp) -> (key: AccountKey, due: Timestamp)? {
        guard let top = peek(), top.due <= now else { return nil }
        let entry = heap.popMin()!
        current.removeValue(forKey: entry.key)
        revision &+= 1
        return top
    }

    /// Takes the earliest deadline off the heap and sets it aside in its
    /// app's line; the account stays scheduled.
    mutating func setAsideEarliest() {
        guard let account = peek(), let top = heap.popMin() else { return }
        setAside[account.key.app, default: Line()].insert(top)
    }

    /// The apps with accounts set aside (some may have gone stale since).
    var appsWithSetAside: [AppName] { Array(setAside.keys) }

    /// The first live account set aside for `app`, discarding stale ones.
    mutating func firstSetAside(of app: AppName) -> (key: AccountKey, due: Timestamp)? {
        while let entry = setAside[app]?.first {
            if current[entry.key] == entry.due {
                return (accountKey(entry.key), Timestamp(millisecondsSince1970: entry.due))
            }
            setAside[app]!.removeFirst()
        }
        setAside[app] = nil
        return nil
    }

    /// Removes and returns the first live account set aside for `app`.
    mutating func popSetAside(of app: AppName) -> (key: AccountKey, due: Timestamp)? {
        guard let first = firstSetAside(of: app), let entry = setAside[app]?.first else { return nil }
        setAside[app]!.removeFirst()
        current.removeValue(forKey: entry.key)
        revision &+= 1
        return first
    }

    /// Moves every deadline by `offset` in O(n): the wall clock was stepped.
    mutating func shiftAll(by offset: Duration) {
        let milliseconds = offset.wholeMilliseconds
        revision &+= 1
        for key in Array(current.keys) { current[key]! &+= milliseconds }
        rebuildHeap()
    }

    /// Puts every live deadline back on the heap, set-aside ones included:
    /// whatever must wait for its app is set aside again when it comes up.
    private mutating func rebuildHeap() {
        heap = Heap(current.map { Entry(due: $0.value, key: $0.key) })
        setAside.removeAll()
    }

    /// How long before its deadline each account must be allowed to start
    /// so that, at `callsPerSecond`, every account starts by its deadline:
    /// the most work any stretch of the schedule holds beyond its length,
    /// max over i > j of ((i - j) / rate - (d[i] - d[j])) over the sorted
    /// deadlines. Zero when the calls fit. O(n log n).
    func requiredLead(callsPerSecond: Double) -> Duration {
        guard callsPerSecond > 0 else { return .zero }
        return Self.callDemand(deadlines: current.values.sorted(), now: 0, callsPerSecond: callsPerSecond).lead
    }

    /// ``requiredLead(callsPerSecond:)`` for each app over its own accounts
    /// at its own rate (nil: no limit, no lead); apps that need none are left out.
    func requiredLeads(callsPerSecond rate: (AppName) -> Double?) -> [AppName: Duration] {
        callDemand(now: Timestamp(millisecondsSince1970: 0), callsPerSecond: rate).compactMapValues {
            $0.lead > .zero ? $0.lead : nil
        }
    }

    /// What one app's schedule asks of its call rate.
    struct CallDemand: Equatable {
        /// ``requiredLead(callsPerSecond:)``.
        var lead: Duration
        /// The calls a second that would start every account by its deadline
        /// from `now` on: the most accounts due by any deadline at least
        /// ``demandWindow`` away (not counting those due sooner), per second
        /// until it. Nearer crowds and backlogs are what the lead is for.
        var needed: Double
    }

    /// Deadlines nearer than this do not make a need of their own (see ``CallDemand/needed``).
    static let demandWindow: Int64 = 60_000

    /// Each rate-limited app's ``CallDemand`` over its own accounts at its own rate.
    func callDemand(now: Timestamp, callsPerSecond rate: (AppName) -> Double?) -> [AppName: CallDemand] {
        // By the app's number, not its name: hashing a name per account was
        // a fifth of the cost at a million.
        var byApp = [[Int64]](repeating: [], count: apps.count)
        if apps.count == 1 { byApp[0].reserveCapacity(current.count) }
        for (key, due) in current { byApp[Int(key.app)].append(due) }
        var demand: [AppName: CallDemand] = [:]
        for number in byApp.indices where !byApp[number].isEmpty {
            let app = apps[number]
            guard let callsPerSecond = rate(app), callsPerSecond > 0 else { continue }
            // Sorted in place: a second array of a million deadlines is 8 MB
            // the allocator keeps once freed.
            byApp[number].sort()
            demand[app] = Self.callDemand(
                deadlines: byApp[number], now: now.millisecondsSince1970, callsPerSecond: callsPerSecond)
        }
        return demand
    }

    private static func callDemand(deadlines: [Int64], now: Int64, callsPerSecond: Double) -> CallDemand {
        let spacingMs = 1000 / callsPerSecond
        var lowest = Double.infinity
        var leadMs = 0.0
        var needed = 0.0
        var near = 0
        for (index, deadline) in deadlines.enumerated() {
            // x[i] = i * spacing - d[i]; the lead is the largest rise of x.
            let x = Double(index) * spacingMs - Double(deadline)
            lowest = min(lowest, x)
            leadMs = max(leadMs, x - lowest)
            let ahead = deadline - now
            if ahead < demandWindow {
                // Overdue or near: a backlog (a restart, a pause) the lead
                // drains, not a need the rate must meet from now on.
                near = index + 1
            } else {
                needed = max(needed, Double(index + 1 - near) * 1000 / Double(ahead))
            }
        }
        return CallDemand(lead: .milliseconds(Int64(leadMs.rounded(.up))), needed: needed)
    }

    private mutating func compactIfNeeded() {
        guard heap.count > 1024, heap.count > 2 * current.count else { return }
        rebuildHeap()
    }
}
