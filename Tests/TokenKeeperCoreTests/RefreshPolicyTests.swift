import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// Always the smallest value: no jitter at all.
private struct ZeroRandom: RandomNumberGenerator {
    mutating func next() -> UInt64 { 0 }
}

private let start = Timestamp(millisecondsSince1970: 1_764_182_418_000)

private func grant(
    lifetime: Duration = .seconds(86_400), refreshLeft: Duration = .seconds(30 * 86_400),
    receivedAt: Timestamp = start, gatewayClockOffset: Duration = .zero
) -> TokenGrant {
    // The gateway's absolute times are in its own clock.
    let gatewayNow = receivedAt + gatewayClockOffset
    return TokenGrant(
        sellerID: "s1", profile: SellerProfile(), accessToken: Secret("a"), refreshToken: Secret("r"),
        accessTokenLifetime: lifetime, refreshTokenLifetime: refreshLeft, expireTime: gatewayNow + lifetime,
        refreshTokenValidTime: gatewayNow + refreshLeft, receivedAt: receivedAt, requestID: nil)
}

struct RefreshPolicyNextRefreshTests {
    @Test func refreshesWhenTheRemainingFractionIsLeft() {
        let policy = RefreshPolicy(remainingFraction: 0.2, jitterFraction: 0)
        var random = SeededRandom(seed: 1)
        let due = policy.nextRefresh(after: grant(lifetime: .seconds(1000)), using: &random)
        #expect(due == start + .seconds(800))
    }

    @Test func jitterMakesItEarlierByAtMostTheJitterFraction() {
        let policy = RefreshPolicy(remainingFraction: 0.2, jitterFraction: 0.05)
        var random = SeededRandom(seed: 7)
        let dues = (0..<1000).map { _ in policy.nextRefresh(after: grant(lifetime: .seconds(1000)), using: &random) }
        #expect(dues.allSatisfy { $0 >= start + .seconds(750) && $0 <= start + .seconds(800) })
        // Spread, not all at one end.
        #expect(Set(dues).count > 500)
        #expect(dues.contains { $0 < start + .seconds(760) } && dues.contains { $0 > start + .seconds(790) })
    }

    @Test func lastRefreshHappensShortlyBeforeTheRefreshTokenRunsOut() {
        let policy = RefreshPolicy(jitterFraction: 0.05, finalRefreshMargin: .seconds(300))
        var random = SeededRandom(seed: 3)
        for _ in 0..<200 {
            // A day-long access token, but the refresh token has ten hours left.
            let due = policy.nextRefresh(
                after: grant(lifetime: .seconds(86_400), refreshLeft: .seconds(36_000)), using: &random)
            #expect(due <= start + .seconds(36_000 - 300))
            #expect(due >= start + .seconds(36_000 - 450))
        }
    }

    @Test func afterTheLastRefreshNoBurstOfRefreshesFollows() {
        // A refresh does not extend the refresh token: follow the grants the
        // gateway would hand out and count the calls in the last hour.
        let policy = RefreshPolicy(finalRefreshMargin: .seconds(300), minimumInterval: .zero)
        var random = SeededRandom(seed: 11)
        let validUntil = start + .seconds(36_000)
        var now = start
        var refreshes: [Timestamp] = []
        while refreshes.count < 50 {
            let answer = grant(lifetime: .seconds(86_400), refreshLeft: validUntil - now, receivedAt: now)
            let due = policy.nextRefresh(after: answer, using: &random)
            let account = Account(
                sellerID: "s1", refreshToken: Secret("r"), accessToken: Secret("a"), expireTime: answer.expireTime,
                accessTokenLifetime: answer.accessTokenLifetime, refreshTokenValidTime: validUntil,
                nextRefreshAt: due, updatedAt: now)
            // Past the validity the gateway rejects the token: the chain ends there.
            guard policy.action(for: account, now: due) == .refresh, due < validUntil else { break }
            now = due
            refreshes.append(due)
        }
        #expect(refreshes.count == 1)
        #expect(refreshes.allSatisfy { $0 < validUntil })
    }

    @Test func shortRefreshTokenValidityStillGetsRegularRefreshes() {
        // The vendor's example: a 10-second access token, 60 seconds of refresh.
        let policy = RefreshPolicy(jitterFraction: 0, finalRefreshMargin: .seconds(300), minimumInterval: .seconds(1))
        var random = ZeroRandom()
        let due = policy.nextRefresh(after: grant(lifetime: .seconds(10), refreshLeft: .seconds(60)), using: &random)
        #expect(due == start + .seconds(8))
        // With the default minimum interval, never sooner than a minute.
        #expect(
            RefreshPolicy(jitterFraction: 0).nextRefresh(
                after: grant(lifetime: .seconds(10), refreshLeft: .seconds(60)), using: &random) == start + .seconds(60)
        )
    }

    @Test func skewedLocalClockDoesNotMoveTheRefreshLater() {
        let policy = RefreshPolicy(jitterFraction: 0)
        var random = ZeroRandom()
        let expected = start + .seconds(800)
        for offset in [Duration.seconds(-7200), .zero, .seconds(7200)] {
            let answer = grant(lifetime: .seconds(1000), receivedAt: start, gatewayClockOffset: offset)
            #expect(policy.nextRefresh(after: answer, using: &random) == expected)
        }
    }

    @Test func missingExpiresInFallsBackToTheAbsoluteExpiry() {
        let policy = RefreshPolicy(jitterFraction: 0)
        var random = ZeroRandom()
        var answer = grant(lifetime: .seconds(1000))
        answer.accessTokenLifetime = .zero
        #expect(policy.nextRefresh(after: answer, using: &random) == start + .seconds(800))
    }
}

struct RefreshPolicyStoredAccountTests {
    private func account(
        accessToken: Secret? = Secret("a"), expireTime: Timestamp? = start + .seconds(1000),
        lifetime: Duration? = .seconds(1000), refreshedAt: Timestamp? = nil
    ) -> Account {
        Account(
            sellerID: "s1", refreshToken: Secret("r"), accessToken: accessToken, expireTime: expireTime,
            accessTokenLifetime: lifetime, refreshTokenValidTime: start + .seconds(30 * 86_400),
            refreshedAt: refreshedAt, updatedAt: start)
    }

    @Test func importedAccountWithoutAnAccessTokenIsDueNow() {
        var random = ZeroRandom()
        let due = RefreshPolicy().nextRefresh(
            for: account(accessToken: nil, expireTime: nil), now: start, using: &random)
        #expect(due == start)
    }

    @Test func accountWhoseTokenExpiredWhileTheDaemonWasDownIsDueNow() {
        var random = ZeroRandom()
        let expired = account(expireTime: start - .seconds(1))
        #expect(RefreshPolicy().nextRefresh(for: expired, now: start, using: &random) == start)
    }

    @Test func storedAccountIsScheduledFromItsGrant() {
        let policy = RefreshPolicy(jitterFraction: 0)
        var random = ZeroRandom()
        // Granted at `start` with 1000 s; at start + 100 s the refresh is still at 800 s.
        let due = policy.nextRefresh(for: account(), now: start + .seconds(100), using: &random)
        #expect(due == start + .seconds(800))
    }

    @Test func localGrantTimeWinsWhenTheGatewaysExpiryIsLater() {
        let policy = RefreshPolicy(jitterFraction: 0)
        var random = ZeroRandom()
        // Our clock was an hour behind the gateway's when the token came.
        let skewed = account(expireTime: start + .seconds(4600), refreshedAt: start)
        #expect(policy.nextRefresh(for: skewed, now: start, using: &random) == start + .seconds(800))
    }
}

struct RefreshPolicyActionTests {
    private func account(
        status: AccountStatus = .active, isRefreshable: Bool = true, expireTime: Timestamp? = start + .seconds(600),
        refreshTokenValidTime: Timestamp? = start + .seconds(86_400)
    ) -> Account {
        Account(
            sellerID: "s1", refreshToken: Secret("r"), accessToken: Secret("a"), expireTime: expireTime,
            refreshTokenValidTime: refreshTokenValidTime, isRefreshable: isRefreshable, status: status,
            updatedAt: start)
    }

    @Test func activeRefreshableAccountIsRefreshed() {
        #expect(RefreshPolicy().action(for: account(), now: start) == .refresh)
    }

    @Test func inactiveAccountsAreLeftAlone() {
        #expect(RefreshPolicy().action(for: account(status: .disabled), now: start) == .none)
        #expect(RefreshPolicy().action(for: account(status: .reauthRequired), now: start) == .none)
    }

    @Test func spentRefreshTokenWaitsForTheAccessTokenThenNeedsReauthorization() {
        let final = account(isRefreshable: false)
        #expect(RefreshPolicy().action(for: final, now: start) == .expireAt(start + .seconds(600)))
        #expect(
            RefreshPolicy().action(for: final, now: start + .seconds(600))
                == .markReauthRequired(reason: StatusReason.refreshTokenExpired))
        // Past its validity by our clock only: the gateway decides, with one more call.
        let pastValidity = account(refreshTokenValidTime: start - .seconds(1))
        #expect(RefreshPolicy().action(for: pastValidity, now: start) == .refresh)
    }
}

struct RefreshPolicyRetryTests {
    @Test func firstRetryWaitsUpToTheInitialDelay() {
        let policy = RefreshPolicy(retryInitial: .seconds(5), retryMax: .seconds(300))
        var random = SeededRandom(seed: 5)
        for _ in 0..<500 {
            let delay = policy.retryDelay(failedAttempts: 1, now: start, expireTime: nil, using: &random)
            #expect(delay >= .milliseconds(500) && delay <= .seconds(5))
        }
    }

    @Test func delaysGrowAndStopAtTheMaximum() {
        let policy = RefreshPolicy(retryInitial: .seconds(5), retryMax: .seconds(300))
        var random = SeededRandom(seed: 9)
        for attempts in [4, 7, 10, 60, 1000, Int.max] {
            let delay = policy.retryDelay(failedAttempts: attempts, now: start, expireTime: nil, using: &random)
            #expect(delay <= .seconds(300))
        }
        let fourth = (0..<200).map { _ in
            policy.retryDelay(failedAttempts: 4, now: start, expireTime: nil, using: &random)
        }
        #expect(fourth.allSatisfy { $0 >= .seconds(4) && $0 <= .seconds(40) })
    }

    @Test func delayIsAtMostAQuarterOfTheAccessTokensRemainingLife() {
        let policy = RefreshPolicy(retryInitial: .seconds(5), retryMax: .seconds(300))
        var random = SeededRandom(seed: 13)
        for _ in 0..<200 {
            let delay = policy.retryDelay(
                failedAttempts: 20, now: start, expireTime: start + .seconds(100), using: &random)
            #expect(delay <= .seconds(25))
            let almostExpired = policy.retryDelay(
                failedAttempts: 20, now: start, expireTime: start + .seconds(2), using: &random)
            #expect(almostExpired <= .seconds(1) && almostExpired >= .milliseconds(100))
        }
    }

    @Test func expiredTokenDoesNotShortenTheDelay() {
        let policy = RefreshPolicy(retryInitial: .seconds(5), retryMax: .seconds(300))
        var random = SeededRandom(seed: 17)
        let delays = (0..<200).map { _ in
            policy.retryDelay(failedAttempts: 20, now: start, expireTime: start - .seconds(10), using: &random)
        }
        #expect(delays.allSatisfy { $0 >= .seconds(30) && $0 <= .seconds(300) })
    }
}
