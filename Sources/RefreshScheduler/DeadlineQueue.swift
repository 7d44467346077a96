import TokenKeeperCore

/// Every account's next deadline: a min-heap ordered by due time, with lazy
/// invalidation. Rescheduling an account pushes a new entry and records the
/// new deadline in the account's slot; the old heap entry stays behind and is
/// discarded when it reaches the top, because its deadline is no longer the
/// account's. So rescheduling is O(log n) with no search in the heap, and a
/// compaction rebuilds the heap when stale entries outnumber live ones.
///
/// Several apps share the one heap, but each app calls the gateway at its
/// own pace and may be held back alone (throttled, its configuration
/// rejected). A due account whose app cannot call yet is *set aside*: taken
/// off the heap into its app's line of due accounts, kept in deadline order,
/// while its slot keeps its deadline, so it stays
/// scheduled (``contains(_:)``, ``due(of:)``, ``count``) and a change of its
/// deadline or its removal makes the set-aside entry stale exactly as it
/// makes a heap entry stale. The heap's top then moves on to the other apps'
/// accounts, and the held app's accounts wait in line without being pushed
/// back onto the heap at every wake-up (which, for a crowd waiting for the
/// rate limit, would cost a push per account per call).
///
/// Memory, at a million accounts: each account seen has a *slot*, a number
/// into parallel arrays of its seller id (16 bytes), its app's number (4)
/// and its deadline (8); an open-addressed table of slot numbers (4 bytes,
/// at most half full) finds the slot of an account; a heap entry is a
/// deadline and a slot (16 bytes). About 50 MB in all, where a dictionary of
/// keys to deadlines (32 bytes a slot, 2^21 slots) and entries holding the
/// whole key (32 bytes) took about 100. A slot is kept once given, for as
/// long as the schedule (an account's deadline comes and goes at each
/// refresh); ``load(_:)`` starts afresh.
struct DeadlineQueue {
    /// The deadline of a slot whose account has none.
    private static let noDeadline = Int64.min
    /// An empty place in ``index``.
    private static let vacant = UInt32.max

    private struct Entry {
        var due: Int64
        var slot: UInt32
    }

    /// The apps seen, in the order first seen: a slot's app is an index here.
    private var apps: [AppName] = []
    private var appNumbers: [AppName: UInt32] = [:]

    // By slot.
    private var sellerIDs: [String] = []
    private var appOfSlot: [UInt32] = []
    /// The live deadline, in milliseconds (set-aside ones included), or ``noDeadline``.
    private var dues: [Int64] = []
    /// Slot numbers by hash of (app, seller id), linear probing; ``vacant`` where empty.
    private var index: [UInt32] = []
    private var live = 0

    /// A binary min-heap of entries, ties by seller id (its bytes), then app.
    private var heap: [Entry] = []
    private var setAside: [AppName: Line] = [:]

    /// Accounts with a deadline (set-aside ones included).
    var count: Int { live }

    /// Counts the changes of the live deadlines: a lead planned at one
    /// revision still holds while it is unchanged.
    private(set) var revision: UInt64 = 0

    /// Heap entries, live and stale (for tests of compaction).
    var storedEntries: Int { heap.count }

    func due(of account: AccountKey) -> Timestamp? {
        guard let slot = slot(of: account), dues[Int(slot)] != Self.noDeadline else { return nil }
        return Timestamp(millisecondsSince1970: dues[Int(slot)])
    }

    func contains(_ account: AccountKey) -> Bool {
        slot(of: account).map { dues[Int($0)] != Self.noDeadline } ?? false
    }

    // MARK: - Slots

    /// The number of `app`, given if it is new.
    private mutating func appNumber(_ app: AppName) -> UInt32 {
        // Most fleets have one app: its name is compared, not hashed.
        if apps.count == 1, apps[0] == app { return 0 }
        if let number = appNumbers[app] { return number }
        let number = UInt32(apps.count)
        apps.append(app)
        appNumbers[app] = number
        return number
    }

    private static func hash(app: UInt32, sellerID: String) -> Int {
        var hasher = Hasher()
        hasher.combine(app)
        hasher.combine(sellerID)
        return hasher.finalize()
    }

    /// Where `sellerID` of app `app` is in ``index``, or the vacant place where it would go.
    private func probe(app: UInt32, sellerID: String) -> (slot: UInt32?, place: Int) {
        let mask = index.count - 1
        var place = Self.hash(app: app, sellerID: sellerID) & mask
        while index[place] != Self.vacant {
            let slot = index[place]
            if appOfSlot[Int(slot)] == app, sellerIDs[Int(slot)] == sellerID { return (slot, place) }
            place = (place + 1) & mask
        }
        return (nil, place)
    }

    /// The slot of `account` if it has one.
    private func slot(of account: AccountKey) -> UInt32? {
        guard !index.isEmpty else { return nil }
        let app: UInt32
        if apps.count == 1, apps[0] == account.app {
            app = 0
        } else if let number = appNumbers[account.app] {
            app = number
        } else {
            return nil
        }
        return probe(app: app, sellerID: account.sellerID).slot
    }

    /// The slot of `account`, given (with no deadline) if it has none.
    private mutating func slot(for account: AccountKey) -> UInt32 {
        let app = appNumber(account.app)
        if (sellerIDs.count + 1) * 2 > index.count { growIndex(toHold: sellerIDs.count + 1) }
        let (found, place) = probe(app: app, sellerID: account.sellerID)
        if let found { return found }
        let slot = UInt32(sellerIDs.count)
        sellerIDs.append(account.sellerID)
        appOfSlot.append(app)
        dues.append(Self.noDeadline)
        index[place] = slot
        return slot
    }

    /// Makes ``index`` at least twice `count` places (a power of two) and
    /// puts every slot back in it.
    private mutating func growIndex(toHold count: Int) {
        var capacity = max(16, index.count)
        while capacity < count * 2 { capacity *= 2 }
        index = [UInt32](repeating: Self.vacant, count: capacity)
        let mask = capacity - 1
        for slot in sellerIDs.indices {
            var place = Self.hash(app: appOfSlot[slot], sellerID: sellerIDs[slot]) & mask
            while index[place] != Self.vacant { place = (place + 1) & mask }
            index[place] = UInt32(slot)
        }
    }

    private func accountKey(_ slot: UInt32) -> AccountKey {
        AccountKey(app: apps[Int(appOfSlot[Int(slot)])], sellerID: sellerIDs[Int(slot)])
    }

    private func isLive(_ entry: Entry) -> Bool {
        dues[Int(entry.slot)] == entry.due
    }

    // MARK: - The heap

    // A binary heap of its own rather than swift-collections' `Heap`, whose
    // elements must be `Comparable` on their own: an entry that could order
    // its ties without the queue would carry the seller id (32 bytes an
    // entry, not 16).

    /// Deadline order; ties by seller id (bytes, not characters, for
    /// equality too: one strict order), then by app.
    private func precedes(_ lhs: Entry, _ rhs: Entry) -> Bool {
        if lhs.due != rhs.due { return lhs.due < rhs.due }
        let left = sellerIDs[Int(lhs.slot)].utf8
        let right = sellerIDs[Int(rhs.slot)].utf8
        if left.elementsEqual(right) { return appOfSlot[Int(lhs.slot)] < appOfSlot[Int(rhs.slot)] }
        return left.lexicographicallyPrecedes(right)
    }

    private mutating func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard precedes(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    private mutating func popMin() -> Entry? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return first
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            var least = left
            if left + 1 < heap.count, precedes(heap[left + 1], heap[left]) { least = left + 1 }
            guard precedes(heap[least], heap[parent]) else { return }
            heap.swapAt(least, parent)
            parent = least
        }
    }

    /// Orders `heap` as a heap in O(n).
    private mutating func heapify() {
        guard heap.count > 1 else { return }
        for parent in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(parent) }
    }

    // MARK: - Set aside

    /// One app's accounts set aside, earliest deadline first (an array read
    /// from `head`, so that taking the first is O(1)).
    private struct Line {
        var entries: [Entry] = []
        var head = 0

        var first: Entry? { head < entries.count ? entries[head] : nil }

        /// Entries come off the heap in deadline order and are appended; one
        /// that comes later with an earlier deadline (a retry due in seconds,
        /// a forced refresh) goes to its place rather than behind the rest.
        mutating func insert(_ entry: Entry, by precedes: (Entry, Entry) -> Bool) {
            guard let last = entries.last, head < entries.count, precedes(entry, last) else {
                entries.append(entry)
                return
            }
            var low = head
            var high = entries.count
            while low < high {
                let middle = (low + high) / 2
                if precedes(entries[middle], entry) { low = middle + 1 } else { high = middle }
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

    // MARK: - The schedule

    /// Replaces the whole schedule in O(n).
    mutating func load(_ accounts: some Sequence<ScheduledAccount>) {
        revision &+= 1
        let expected = accounts.underestimatedCount
        sellerIDs = []
        appOfSlot = []
        dues = []
        sellerIDs.reserveCapacity(expected)
        appOfSlot.reserveCapacity(expected)
        dues.reserveCapacity(expected)
        // Sized once: growing a table of a million rehashes it ~20 times.
        index = []
        growIndex(toHold: expected)
        setAside.removeAll()
        live = 0
        // An eighth to spare (2 MB at a million): the heap grows by the
        // sellers added while the daemon runs, and its first insert past the
        // capacity would copy it into twice the room.
        heap = []
        heap.reserveCapacity(expected + expected / 8)
        for account in accounts {
            guard let due = account.due?.millisecondsSince1970 else { continue }
            let slot = slot(for: account.key)
            let existing = dues[Int(slot)]
            // A store lists each account once; one that did not keeps the earlier deadline.
            if existing != Self.noDeadline, existing <= due { continue }
            if existing == Self.noDeadline { live += 1 }
            dues[Int(slot)] = due
            heap.append(Entry(due: due, slot: slot))
        }
        heapify()
    }

    /// Sets the account's deadline, replacing the one it had.
    mutating func schedule(_ account: AccountKey, at due: Timestamp) {
        let slot = slot(for: account)
        let milliseconds = due.millisecondsSince1970
        if dues[Int(slot)] == milliseconds { return }
        revision &+= 1
        if dues[Int(slot)] == Self.noDeadline { live += 1 }
        dues[Int(slot)] = milliseconds
        push(Entry(due: milliseconds, slot: slot))
        compactIfNeeded()
    }

    /// Removes the account's deadline; its heap or set-aside entry is discarded later.
    mutating func remove(_ account: AccountKey) {
        guard let slot = slot(of: account), dues[Int(slot)] != Self.noDeadline else { return }
        dues[Int(slot)] = Self.noDeadline
        live -= 1
        revision &+= 1
    }

    /// The earliest live deadline on the heap (set-aside accounts are not on
    /// it). An entry is live while its deadline is still the account's (a
    /// second entry with the same deadline, left by a remove and a re-add, is
    /// found stale once the first is taken).
    mutating func peek() -> (key: AccountKey, due: Timestamp)? {
        while let top = heap.first {
            if isLive(top) { return (accountKey(top.slot), Timestamp(millisecondsSince1970: top.due)) }
            popMin()
        }
        return nil
    }

    /// Removes and returns the earliest deadline on the heap if it is at or before `now`.
    mutating func popDue(notAfter now: Timestamp) -> (key: AccountKey, due: Timestamp)? {
        guard let top = peek(), top.due <= now, let entry = popMin() else { return nil }
        dues[Int(entry.slot)] = Self.noDeadline
        live -= 1
        revision &+= 1
        return top
    }

    /// Takes the earliest deadline off the heap and sets it aside in its
    /// app's line; the account stays scheduled.
    mutating func setAsideEarliest() {
        guard let account = peek(), let top = popMin() else { return }
        var line = setAside.removeValue(forKey: account.key.app) ?? Line()
        line.insert(top, by: precedes)
        setAside[account.key.app] = line
    }

    /// The apps with accounts set aside (some may have gone stale since).
    var appsWithSetAside: [AppName] { Array(setAside.keys) }

    /// The first live account set aside for `app`, discarding stale ones.
    mutating func firstSetAside(of app: AppName) -> (key: AccountKey, due: Timestamp)? {
        while let entry = setAside[app]?.first {
            if isLive(entry) { return (accountKey(entry.slot), Timestamp(millisecondsSince1970: entry.due)) }
            setAside[app]!.removeFirst()
        }
        setAside[app] = nil
        return nil
    }

    /// Removes and returns the first live account set aside for `app`.
    mutating func popSetAside(of app: AppName) -> (key: AccountKey, due: Timestamp)? {
        guard let first = firstSetAside(of: app), let entry = setAside[app]?.first else { return nil }
        setAside[app]!.removeFirst()
        dues[Int(entry.slot)] = Self.noDeadline
        live -= 1
        revision &+= 1
        return first
    }

    /// Moves every deadline by `offset` in O(n): the wall clock was stepped.
    mutating func shiftAll(by offset: Duration) {
        let milliseconds = offset.wholeMilliseconds
        revision &+= 1
        for slot in dues.indices where dues[slot] != Self.noDeadline { dues[slot] &+= milliseconds }
        rebuildHeap()
    }

    /// Puts every live deadline back on the heap, set-aside ones included:
    /// whatever must wait for its app is set aside again when it comes up.
    private mutating func rebuildHeap() {
        heap.removeAll(keepingCapacity: true)
        for slot in dues.indices where dues[slot] != Self.noDeadline {
            heap.append(Entry(due: dues[slot], slot: UInt32(slot)))
        }
        heapify()
        setAside.removeAll()
    }

    /// The apps seen, in the order first seen.
    var appNames: [AppName] { apps }

    /// The accounts of `app` that, started in the queue's order at
    /// `callsPerSecond` from `now` (each no sooner than its deadline less
    /// the lead the app's schedule needs, as the scheduler starts them),
    /// would start after their deadline, with the time each would start.
    /// Accounts already overdue at `now` are left out. O(n log n) in the
    /// app's accounts, 16 bytes each meanwhile.
    func lateStarts(of app: AppName, now: Timestamp, callsPerSecond: Double) -> [(
        key: AccountKey, due: Timestamp, start: Timestamp
    )] {
        guard callsPerSecond > 0, let number = apps.firstIndex(of: app).map(UInt32.init) else { return [] }
        var entries: [Entry] = []
        for slot in dues.indices where dues[slot] != Self.noDeadline && appOfSlot[slot] == number {
            entries.append(Entry(due: dues[slot], slot: UInt32(slot)))
        }
        let spacing = 1000 / callsPerSecond
        let nowMs = Double(now.millisecondsSince1970)
        // None can be late when even the last, started at the rate from now,
        // would start before the earliest deadline.
        guard let earliest = entries.lazy.map(\.due).min(),
            nowMs + Double(entries.count - 1) * spacing > Double(earliest)
        else { return [] }
        entries.sort(by: precedes)
        let lead = Self.callDemand(
            deadlines: entries.map(\.due), now: now.millisecondsSince1970, callsPerSecond: callsPerSecond
        ).lead
        let leadMs = Double(lead.wholeMilliseconds)
        var late: [(key: AccountKey, due: Timestamp, start: Timestamp)] = []
        var previous = -Double.infinity
        for entry in entries {
            let start = max(nowMs, Double(entry.due) - leadMs, previous + spacing)
            previous = start
            guard start > Double(entry.due), Double(entry.due) > nowMs else { continue }
            late.append(
                (
                    accountKey(entry.slot), Timestamp(millisecondsSince1970: entry.due),
                    Timestamp(millisecondsSince1970: Int64(start.rounded(.up)))
                ))
        }
        return late
    }

    /// The live deadlines, in no order.
    private var liveDeadlines: some Sequence<Int64> {
        dues.lazy.filter { $0 != Self.noDeadline }
    }

    /// How long before its deadline each account must be allowed to start
    /// so that, at `callsPerSecond`, every account starts by its deadline:
    /// the most work any stretch of the schedule holds beyond its length,
    /// max over i > j of ((i - j) / rate - (d[i] - d[j])) over the sorted
    /// deadlines. Zero when the calls fit. O(n log n).
    func requiredLead(callsPerSecond: Double) -> Duration {
        guard callsPerSecond > 0 else { return .zero }
        return Self.callDemand(deadlines: liveDeadlines.sorted(), now: 0, callsPerSecond: callsPerSecond).lead
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
        if apps.count == 1 { byApp[0].reserveCapacity(live) }
        for slot in dues.indices where dues[slot] != Self.noDeadline { byApp[Int(appOfSlot[slot])].append(dues[slot]) }
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
        guard heap.count > 1024, heap.count > 2 * live else { return }
        rebuildHeap()
    }
}
