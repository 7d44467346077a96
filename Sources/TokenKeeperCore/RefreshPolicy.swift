/// When to refresh and how long to wait after a failure: pure functions of the
/// stored state, the clock and an injected random source.
public struct RefreshPolicy: Sendable, Equatable {
    /// Refresh when this fraction of the access token's lifetime is left.
    public var remainingFraction: Double
    /// Refresh up to this fraction of the lifetime earlier, at random, so that
    /// sellers enrolled together do not refresh together.
    public var jitterFraction: Double
    /// The last refresh happens this long before `refresh_token_valid_time`.
    public var finalRefreshMargin: Duration
    /// First retry delay after a transient failure.
    public var retryInitial: Duration
    /// Retry delays never exceed this.
    public var retryMax: Duration
    /// While the access token is still valid, a retry delay is at most this
    /// fraction of the time it has left, so several tries fit before it expires.
    public var retryFractionOfRemaining: Double
    /// The shortest time between two refreshes of one seller
    /// (`refresh.min_interval_seconds`): a zero, negative or tiny lifetime in
    /// an answer is refreshed again after this, never at once.
    public var minimumInterval: Duration

    public init(
        remainingFraction: Double = 0.2, jitterFraction: Double = 0.05,
        finalRefreshMargin: Duration = .seconds(300), retryInitial: Duration = .seconds(5),
        retryMax: Duration = .seconds(300), retryFractionOfRemaining: Double = 0.25,
        minimumInterval: Duration = .seconds(60)
    ) {
        self.remainingFraction = remainingFraction
        self.jitterFraction = jitterFraction
        self.finalRefreshMargin = finalRefreshMargin
        self.retryInitial = retryInitial
        self.retryMax = retryMax
        self.retryFractionOfRemaining = retryFractionOfRemaining
        self.minimumInterval = minimumInterval
    }

    /// The next refresh after a grant: the earlier of the moment when
    /// ``remainingFraction`` of the lifetime is left and shortly before the
    /// refresh token runs out, less a random jitter. Computed from the moment
    /// the answer arrived (our clock) and the stated lifetimes, never from the
    /// gateway's absolute times, so a skewed local clock cannot make it late.
    /// Never sooner than ``minimumInterval`` after the answer.
    public func nextRefresh(
        after grant: TokenGrant, using random: inout some RandomNumberGenerator
    ) -> Timestamp {
        let lifetime = effectiveLifetime(of: grant)
        let due = nextRefresh(
            lifetime: lifetime, from: grant.receivedAt,
            refreshTokenLeft: grant.refreshTokenLifetime.flatMap { $0 > .zero ? $0 : nil },
            using: &random)
        return max(due, grant.receivedAt + minimumInterval)
    }

    /// The latest the next refresh after a grant may be planned when the
    /// app's call rate cannot serve ``nextRefresh(after:using:)``'s times:
    /// when half of ``remainingFraction`` of the lifetime is left (a tenth by
    /// default), never past the last refresh the refresh token allows, and
    /// never before the policy's own time. Planned there, each seller is
    /// refreshed less often (every 90 % of its lifetime, not every 75–80 %), so
    /// that a fleet whose calls do not fit the rate at the policy's times
    /// fits it without a token expiring; a tenth of the life is left for
    /// retries.
    public func latestRefresh(after grant: TokenGrant, planned: Timestamp) -> Timestamp {
        let lifetime = effectiveLifetime(of: grant)
        guard !grant.isFinalGrant, lifetime > minimumInterval else { return planned }
        let lifetimeMs = Double(lifetime.wholeMilliseconds)
        var latest = grant.receivedAt + .milliseconds(Int64(lifetimeMs * (1 - remainingFraction / 2)))
        if let refreshTokenLeft = grant.refreshTokenLifetime, refreshTokenLeft > .zero {
            latest = min(latest, grant.receivedAt + refreshTokenLeft - finalRefreshMargin)
        }
        return max(latest, planned)
    }

    /// How many times fewer calls a fleet makes planned at
    /// ``latestRefresh(after:planned:)`` than at the policy's times (on
    /// average: the policy plans at 1 − ``remainingFraction`` − half the
    /// jitter of the life); about 1.16 by default.
    public var latestRefreshRelief: Double {
        (1 - remainingFraction / 2) / max(1 - remainingFraction - jitterFraction / 2, 0.01)
    }

    /// The access token's lifetime as far as the answer tells: `expires_in`,
    /// else the distance to `expire_time`; zero when neither says anything.
    public func effectiveLifetime(of grant: TokenGrant) -> Duration {
        if grant.accessTokenLifetime > .zero { return grant.accessTokenLifetime }
        return max(grant.expireTime - grant.receivedAt, .zero)
    }

    /// True when the answer's lifetime is so short that ``minimumInterval``,
    /// not the lifetime, decides the next refresh: a gateway anomaly worth a log line.
    public func lifetimeIsAnomalous(_ grant: TokenGrant) -> Bool {
        !grant.isFinalGrant && effectiveLifetime(of: grant) <= minimumInterval
    }

    /// The next refresh of a stored account that has no fresh grant in hand (an
    /// import, or a daemon start): due now when it has no usable access token.
    ///
    /// Where the account records when its token was granted (`refreshedAt`, our
    /// clock) and the stated lifetime, the token is taken to expire at the
    /// earlier of that and the gateway's `expire_time`, so a local clock that is
    /// behind the gateway's cannot make the refresh late.
    public func nextRefresh(
        for account: Account, now: Timestamp, using random: inout some RandomNumberGenerator
    ) -> Timestamp {
        guard account.accessToken != nil, var expiry = account.expireTime else { return now }
        if let lifetime = account.accessTokenLifetime, lifetime > .zero, let refreshedAt = account.refreshedAt {
            expiry = min(expiry, refreshedAt + lifetime)
        }
        guard expiry > now else { return now }
        let left = expiry - now
        let stated = account.accessTokenLifetime ?? account.refreshedAt.map { expiry - $0 }
        let lifetime = stated.map { max($0, left) } ?? left
        // Where the token was granted, as far as we can tell from what is stored.
        let grantedAt = expiry - lifetime
        let refreshLeft = account.refreshTokenValidTime.map { $0 - grantedAt }
        return max(
            now,
            nextRefresh(lifetime: lifetime, from: grantedAt, refreshTokenLeft: refreshLeft, using: &random))
    }

    func nextRefresh(
        lifetime: Duration, from start: Timestamp, refreshTokenLeft: Duration?,
        using random: inout some RandomNumberGenerator
    ) -> Timestamp {
        let lifetimeMs = Double(lifetime.wholeMilliseconds)
        var due = start + .milliseconds(Int64(lifetimeMs * (1 - remainingFraction)))
        let jitterMs = Int64(lifetimeMs * jitterFraction)
        if jitterMs > 0 {
            due = due - .milliseconds(Int64.random(in: 0...jitterMs, using: &random))
        }
        let marginMs = finalRefreshMargin.wholeMilliseconds
        if let refreshTokenLeft, marginMs > 0, refreshTokenLeft.wholeMilliseconds > 2 * marginMs {
            // One last refresh while the refresh token still works, within
            // [valid time - margin * 1.5, valid time - margin]. A refresh does not
            // extend the refresh token, so the grant it brings has at most
            // 1.5 × margin left, which is under 2 × margin: no further final
            // refresh follows. (Capping by a fraction of what is left instead
            // would halve the interval again and again: a burst of rotations
            // just before the refresh token dies.)
            let finalJitterMs = min(jitterMs, marginMs / 2)
            var finalDue = start + (refreshTokenLeft - finalRefreshMargin)
            if finalJitterMs > 0 {
                finalDue = finalDue - .milliseconds(Int64.random(in: 0...finalJitterMs, using: &random))
            }
            due = min(due, finalDue)
        }
        return max(due, start)
    }

    /// The stored deadline as the schedule reads it: never later than the
    /// moment a fifth of the access token's life (stated, else from when it
    /// was stored to its expiry, else 25 minutes) is left by the gateway's
    /// `expire_time`, so that a deadline
    /// written under a wrong local clock cannot make a refresh late. The
    /// store's schedule query (`loadSchedule`) applies the same rule in SQL,
    /// from a covering index (which is why it asks for `expire_time` and not
    /// also for the access token: an index on an expression does not cover).
    public static func effectiveDeadline(of account: Account) -> Timestamp? {
        guard let stored = account.nextRefreshAt else { return nil }
        guard account.isRefreshable, let expireTime = account.expireTime else {
            return stored
        }
        // The life as `nextRefresh(for:now:using:)` reads it: stated, else
        // from when the token was stored to its expiry.
        var lifetimeMs = account.accessTokenLifetime?.wholeMilliseconds ?? 0
        if lifetimeMs == 0 { lifetimeMs = account.refreshedAt.map { (expireTime - $0).wholeMilliseconds } ?? 1_500_000 }
        return min(stored, expireTime - .milliseconds(max(lifetimeMs, 0) / 5))
    }

    /// What the scheduler does with an account at `now`.
    ///
    /// Only the gateway ends an account. A refresh token whose
    /// `refresh_token_valid_time` has passed by our clock is still sent once:
    /// our clock may be wrong (stepped ahead), and the gateway's answer
    /// decides. Only after the gateway itself said it will not refresh again
    /// (a final grant) is the refresh token never sent again.
    public func action(for account: Account, now: Timestamp) -> ScheduledAction {
        guard account.status == .active else { return .none }
        if !account.isRefreshable {
            // Readers keep the last access token until it expires; then the
            // seller must authorize again.
            if let expireTime = account.expireTime, account.accessToken != nil, expireTime > now {
                return .expireAt(expireTime)
            }
            return .markReauthRequired(reason: StatusReason.refreshTokenExpired)
        }
        return .refresh
    }

    /// The delay before retry number `failedAttempts` (1 for the first retry):
    /// capped exponential backoff with full jitter, capped again by a fraction
    /// of the access token's remaining life while it is still valid.
    public func retryDelay(
        failedAttempts: Int, now: Timestamp, expireTime: Timestamp?,
        using random: inout some RandomNumberGenerator
    ) -> Duration {
        let exponent = min(max(failedAttempts - 1, 0), 30)
        let initialMs = Double(retryInitial.wholeMilliseconds)
        var ceilingMs = min(initialMs * Double(1 << exponent), Double(retryMax.wholeMilliseconds))
        if let expireTime, expireTime > now {
            let leftMs = Double((expireTime - now).wholeMilliseconds)
            ceilingMs = min(ceilingMs, max(leftMs * retryFractionOfRemaining, 1000))
        }
        // Full jitter, but never a busy loop: at least a tenth of the ceiling.
        let floorMs = ceilingMs / 10
        return .milliseconds(Int64(Double.random(in: floorMs...max(ceilingMs, floorMs), using: &random)))
    }
}

/// What an account needs from the scheduler.
public enum ScheduledAction: Sendable, Equatable {
    /// Nothing (not active).
    case none
    /// Send its refresh token to the gateway.
    case refresh
    /// Its refresh token is spent; at this moment the last access token
    /// expires and the account becomes `reauth_required`.
    case expireAt(Timestamp)
    /// Mark it `reauth_required` now with this reason.
    case markReauthRequired(reason: String)
}
