import Logging
import TokenKeeperCore

extension RefreshScheduler {
    /// At start, for each app with a call rate: the accounts its rate cannot
    /// start by their deadline (sellers imported together, a backlog after
    /// the daemon was stopped) are planned at the time the rate gives them,
    /// in the same order, as far as their token allows: no later than
    /// halfway from the deadline to the access token's expiry, so that half
    /// of that margin is left for retries. Their starts are then on plan,
    /// not late. An account whose expiry is not known (due more than an
    /// hour before it) keeps its deadline, and so does one already overdue
    /// (its start's delay shows the backlog as it is).
    ///
    /// The rate's starts are worked out as the lead makes them: each account
    /// at the earliest of its deadline less the app's lead, the rate's next
    /// call, and now.
    ///
    /// - Returns: How many accounts were planned later.
    @discardableResult
    func planStartsTheRateAllows(_ schedule: [ScheduledAccount], now: Timestamp) -> Int {
        var byApp: [AppName: [(due: Int64, expiry: Int64?, key: AccountKey)]] = [:]
        for account in schedule where !forced.contains(account.key) {
            guard let due = account.due, configuration.maxCallsPerSecond(for: account.key.app) != nil,
                queue.due(of: account.key) == due
            else { continue }
            byApp[account.key.app, default: []].append(
                (due.millisecondsSince1970, account.expireTime?.millisecondsSince1970, account.key))
        }
        var moved = 0
        for (app, accounts) in byApp {
            guard let rate = configuration.maxCallsPerSecond(for: app), rate > 0 else { continue }
            let spacing = 1000 / rate
            let nowMs = Double(now.millisecondsSince1970)
            // Only an account due before every account ahead of it could
            // have started at the rate can be late: none is, when the last
            // start from now is before the earliest deadline.
            // The queue's order: ties by seller id (bytes).
            let sorted = accounts.sorted {
                guard $0.due == $1.due else { return $0.due < $1.due }
                return $0.key.sellerID.utf8.lexicographicallyPrecedes($1.key.sellerID.utf8)
            }
            guard let earliest = sorted.first?.due,
                nowMs + Double(sorted.count - 1) * spacing > Double(earliest)
            else { continue }
            let lead = DeadlineQueue.callDemand(
                deadlines: sorted.map(\.due), now: now.millisecondsSince1970, callsPerSecond: rate
            ).lead
            let leadMs = Double(lead.wholeMilliseconds)
            var previous = -Double.infinity
            var movedHere = 0
            for account in sorted {
                let start = max(nowMs, Double(account.due) - leadMs, previous + spacing)
                previous = start
                // An account already overdue stays so: its delay shows the backlog.
                guard start > Double(account.due), Double(account.due) > nowMs, let expiry = account.expiry,
                    expiry > account.due
                else { continue }
                let latest = Double(account.due) + Double(expiry - account.due) / 2
                let planned = Timestamp(millisecondsSince1970: Int64(min(start, latest).rounded(.up)))
                queue.schedule(account.key, at: planned)
                movedHere += 1
            }
            guard movedHere > 0 else { continue }
            moved += movedHere
            leadIsStale = true
            logger.notice(
                """
                sellers the call rate cannot start by their planned time are planned when it can, \
                within their token's life
                """,
                metadata: [
                    "app": "\(app)", "accounts": "\(movedHere)", "max_calls_per_second": "\(rate)",
                ])
        }
        return moved
    }
}
