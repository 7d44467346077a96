import Logging
import TokenKeeperCore

extension RefreshScheduler {
    /// At start, for each app with a call rate: the accounts its rate cannot
    /// start by their deadline (sellers imported together, due in one crowd)
    /// are planned at the time the rate gives them, in the same order, as far
    /// as their token allows: no later than halfway from the deadline to the
    /// access token's expiry, so that half of that margin is left for
    /// retries. Their starts are then on plan, not late. An account whose
    /// expiry is not in `expiries` (the store lists it only within the hour
    /// after the deadline) keeps its deadline, and so does one already
    /// overdue (its start's delay shows the backlog as it is).
    ///
    /// - Returns: How many accounts were planned later.
    @discardableResult
    func planStartsTheRateAllows(expiries: [AccountKey: Timestamp], now: Timestamp) -> Int {
        var moved = 0
        for app in queue.appNames {
            guard let rate = configuration.maxCallsPerSecond(for: app), rate > 0 else { continue }
            let late = queue.lateStarts(of: app, now: now, callsPerSecond: rate).filter { !forced.contains($0.key) }
            guard !late.isEmpty else { continue }
            var movedHere = 0
            for start in late {
                guard let expiry = expiries[start.key], expiry > start.due else { continue }
                let latest = start.due + (expiry - start.due) / 2
                queue.schedule(start.key, at: min(start.start, latest))
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
