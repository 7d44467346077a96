import Logging
import TokenKeeperCore

extension RefreshScheduler {
    struct AttemptResult {
        var outcome: RefreshOutcome
        /// True when the refresh token went to the gateway.
        var calledGateway = false
    }

    func attempt(_ job: Job) async {
        let result = await perform(job)
        finish(job, result)
    }

    /// One attempt: lease, re-read, decide, call, make the outcome durable.
    private func perform(_ job: Job) async -> AttemptResult {
        let key = job.account
        let leaseTakenAt = clock.now()
        let lease: LeaseResult
        do {
            lease = try await store.acquireLease(
                account: key, owner: configuration.leaseOwner,
                until: leaseTakenAt + configuration.leaseDuration, now: leaseTakenAt)
            storeWorked()
        } catch {
            let retryAt = storeFailed("take the lease", error, account: key)
            return AttemptResult(outcome: .storeFailed(message: "\(error)", retryAt: retryAt))
        }
        let account: Account
        switch lease {
        case .notFound: return AttemptResult(outcome: .notFound)
        case .busy(let other): return AttemptResult(outcome: .busy(until: other.expiresAt))
        case .acquired(let stored): account = stored
        }
        if let refused = refusedPairs[key] {
            // A pair the store refused earlier: store it, never call again
            // (the refresh token stored is one the gateway rotated away).
            guard account.refreshToken == refused.sent else {
                refusedPairs[key] = nil
                return AttemptResult(outcome: await fenceLost(refused.grant, account: key, sent: refused.sent))
            }
            return AttemptResult(outcome: await commit(refused.grant, for: account, nextDue: refused.nextDue))
        }

        // Decide from the account as stored now, under the lease: another
        // process may have refreshed, disabled or re-authorized it.
        let now = clock.now()
        switch configuration.policy.action(for: account, now: now) {
        case .none:
            await releaseLease(key)
            return AttemptResult(outcome: .skipped(.inactive, nextDue: nil))
        case .expireAt(let expiry):
            await releaseLease(key)
            return AttemptResult(outcome: .skipped(.awaitingExpiry, nextDue: expiry))
        case .markReauthRequired(let reason):
            return AttemptResult(outcome: await markReauthRequired(account, reason: reason, requestID: nil))
        case .refresh:
            // Another process refreshed it meanwhile when its deadline moved
            // past the one this attempt started for (which may lie ahead:
            // the lead starts accounts early).
            if !job.forced, let stored = RefreshPolicy.effectiveDeadline(of: account),
                stored > max(now, job.planned ?? now)
            {
                await releaseLease(key)
                return AttemptResult(outcome: .skipped(.notDue, nextDue: stored))
            }
        }
        guard await takeCallSlot(planned: job.planned) else {
            await releaseLease(key)
            return AttemptResult(outcome: .notAttempted)
        }
        let gateway: any TokenGateway
        switch await readyToCall(job, account: account, leaseTakenAt: leaseTakenAt) {
        case .call(let ready):
            gateway = ready
        case .giveUp(let outcome, let releasingLease):
            // The slot first: a store write never holds one.
            releaseCallSlot()
            if releasingLease { await releaseLease(key) }
            return AttemptResult(outcome: outcome)
        }
        let answer: Result<TokenGrant, GatewayFailure>
        do {
            answer = .success(try await gateway.refresh(refreshToken: account.refreshToken))
        } catch {
            answer = .failure(error)
        }
        releaseCallSlot()
        switch answer {
        case .success(let grant):
            return AttemptResult(outcome: await commit(grant, for: account), calledGateway: true)
        case .failure(let failure):
            return AttemptResult(outcome: await handle(failure, for: account), calledGateway: true)
        }
    }

    private enum CallReadiness {
        case call(any TokenGateway)
        /// Not called: the outcome, and whether the lease is still ours to release.
        case giveUp(RefreshOutcome, releasingLease: Bool)
    }

    /// What decides, once the attempt has its call slot, whether it calls:
    /// the stop, trouble that began while it waited, its app's gateway (a
    /// reload may have replaced or removed it), and its lease, renewed when
    /// the wait took a third of it, so that the call never outlives it.
    private func readyToCall(_ job: Job, account: Account, leaseTakenAt: Timestamp) async -> CallReadiness {
        let key = job.account
        if phase == .stopping || phase == .stopped { return .giveUp(.notAttempted, releasingLease: true) }
        let now = clock.now()
        if let resumeAt = holdBack(job, now: now) {
            return .giveUp(.skipped(.heldBack, nextDue: resumeAt), releasingLease: true)
        }
        guard let gateway = gateways[key.app] else {
            noteMissingGateway(key.app)
            return .giveUp(.configurationRejected(Self.appNotConfigured(key.app)), releasingLease: true)
        }
        guard now - leaseTakenAt > configuration.leaseDuration / 3 else { return .call(gateway) }
        let renewed: LeaseResult
        do {
            renewed = try await store.acquireLease(
                account: key, owner: configuration.leaseOwner, until: now + configuration.leaseDuration, now: now)
            storeWorked()
        } catch {
            let retryAt = storeFailed("renew the lease", error, account: key)
            return .giveUp(.storeFailed(message: "\(error)", retryAt: retryAt), releasingLease: true)
        }
        switch renewed {
        case .notFound: return .giveUp(.notFound, releasingLease: false)
        case .busy(let other): return .giveUp(.busy(until: other.expiresAt), releasingLease: false)
        case .acquired(let stored) where stored.refreshToken != account.refreshToken:
            return .giveUp(.skipped(.tokenChanged, nextDue: clock.now()), releasingLease: true)
        case .acquired: return .call(gateway)
        }
    }

    /// Only this account's app's own trouble holds it back here, and the store's.
    private func holdBack(_ job: Job, now: Timestamp) -> Timestamp? {
        let lane = lanes[job.account.app]
        if let pausedUntil = lane?.pausedUntil, pausedUntil > now { return pausedUntil }
        if lane?.configurationFailure != nil, !job.isProbe { return now }
        if !undurable.isEmpty { return now }
        return nil
    }

    // MARK: - Outcomes that write

    /// Makes the rotated pair durable before anything else happens with it.
    /// Until the write succeeds the pair lives only here: its refresh token is
    /// never sent (the account stays in flight) and the write is retried with
    /// backoff — dropping it would leave the seller with a refresh token the
    /// gateway has already rotated away. A store that cannot write at all
    /// holds every other call back too (each would rotate another token that
    /// cannot be stored); a write refused for this account's own values holds
    /// only this account.
    private func commit(_ grant: TokenGrant, for account: Account, nextDue planned: Timestamp? = nil) async
        -> RefreshOutcome
    {
        let key = account.key
        if planned == nil {
            noteGatewayClock(grant)
            noteAnomalies(grant, account: key)
        }
        let nextDue = planned ?? plannedRefresh(after: grant, app: key.app)
        var delay = configuration.storeRetryInitial
        var failures = 0
        var stopping = false
        defer {
            if failures > 0 {
                unstoredPairs -= 1
                checkIdle()
            }
        }
        while true {
            do {
                let stored = try await store.commitRotation(
                    account: key, sent: account.refreshToken, grant: grant, nextRefreshAt: nextDue, now: clock.now())
                storeWorked()
                if failures > 0 { pairBecameDurable(key, afterFailures: failures) }
                if let refused = refusedPairs.removeValue(forKey: key), stored {
                    logger.notice(
                        "the rotated pair the store had refused is stored",
                        metadata: key.metadata(["refusals": "\(refused.refusals)"]))
                }
                if stored {
                    noteExpiry(key, grant.expireTime, due: nextDue)
                    return .refreshed(requestID: grant.requestID, nextDue: nextDue, isFinalGrant: grant.isFinalGrant)
                }
                return await fenceLost(grant, account: key, sent: account.refreshToken)
            } catch {
                failures += 1
                if failures == 1 { unstoredPairs += 1 }
                let scope = StoreFailureScope.of(error)
                if scope == .account, !stopping {
                    // Refused for this seller's own values: it leaves its
                    // slot and waits on its own backoff, the pair in memory
                    // and the lease kept (no one may send the old token).
                    return await parkRefusedPair(
                        grant, account: key, sent: account.refreshToken, nextDue: nextDue, error: error)
                }
                if failures == 1 || (scope == .store && undurable[key] == nil) {
                    pairNotDurable(key, requestID: grant.requestID, error: error, scope: scope)
                } else {
                    logger.debug(
                        "rotated pair still not durable; retrying",
                        metadata: key.metadata(["attempt": "\(failures)", "error": "\(error)"]))
                }
                if stopping {
                    // The final attempt failed too: hand the grant over to be
                    // kept outside the store rather than lose it.
                    refusedPairs[key] = nil
                    handOverUnstored(grant, account: key, sent: account.refreshToken, error: error)
                    pairBecameDurable(key, afterFailures: 0)
                    return .storeFailed(message: "\(error)", retryAt: clock.now())
                }
                let wait = scope == .contention ? Self.contentionRetry : delay
                if await !sleep(until: clock.now() + wait) {
                    // Stopping: one last attempt, at once.
                    stopping = true
                    continue
                }
                if scope != .contention { delay = min(delay * 2, configuration.storeRetryMax) }
                // Keep the lease while the pair is only in memory: if it
                // lapsed, another process could send the refresh token the
                // gateway already rotated, be told IllegalRefreshToken and
                // mark the seller dead.
                let now = clock.now()
                _ = try? await store.acquireLease(
                    account: key, owner: configuration.leaseOwner, until: now + configuration.leaseDuration, now: now)
            }
        }
    }

    /// The next refresh after a grant: the policy's time, or, while the app's
    /// sellers need more calls a second than its rate allows, the latest the
    /// policy lets it be (``RefreshPolicy/latestRefresh(after:planned:)``),
    /// so that the fleet's calls fit the rate and each start is on time.
    private func plannedRefresh(after grant: TokenGrant, app: AppName) -> Timestamp {
        if grant.isFinalGrant { return grant.expireTime }
        let planned = configuration.policy.nextRefresh(after: grant, using: &random)
        guard callRateShort[app] != nil else { return planned }
        return configuration.policy.latestRefresh(after: grant, planned: planned)
    }

    /// The stored refresh token was replaced during the call (a
    /// re-authorization, an `import --replace`): the stored one stands, and
    /// the pair the gateway just issued is kept all the same, outside the
    /// store, for the operator to decide.
    private func fenceLost(_ grant: TokenGrant, account key: AccountKey, sent: Secret) async -> RefreshOutcome {
        logger.error(
            """
            the stored refresh token changed while this seller was being refreshed; the stored one \
            stands, and the pair the gateway just issued is saved beside the store (see the next line)
            """,
            metadata: key.metadata(["outcome": "fence_lost", "request_id": "\(grant.requestID ?? "")"]))
        emit(.rotationUnstored(account: key, grant: grant, replacing: sent))
        await releaseLease(key)
        return .skipped(.tokenChanged, nextDue: clock.now())
    }

    /// Hands a pair the store never took over to be kept outside it (a
    /// salvage file), with a critical line.
    func handOverUnstored(_ grant: TokenGrant, account key: AccountKey, sent: Secret, error: any Error) {
        logger.critical(
            """
            stopped before the rotated pair could be stored; it is handed over to be saved in a \
            file beside the store (see the next line)
            """,
            metadata: key.metadata([
                "outcome": "commit_lost", "request_id": "\(grant.requestID ?? "")", "error": "\(error)",
            ]))
        emit(.rotationUnstored(account: key, grant: grant, replacing: sent))
    }

    /// Parks a pair the store refused for this seller's own values: noted on
    /// the seller (its last error, shown by `list` and `status`) with the
    /// lease kept, retried on the seller's own backoff.
    private func parkRefusedPair(
        _ grant: TokenGrant, account key: AccountKey, sent: Secret, nextDue: Timestamp, error: any Error
    ) async -> RefreshOutcome {
        var refused = refusedPairs[key] ?? RefusedPair(grant: grant, sent: sent, nextDue: nextDue)
        refused.refusals += 1
        refusedPairs[key] = refused
        let exponent = min(refused.refusals - 1, 16)
        let now = clock.now()
        let retryAt = now + min(configuration.storeRetryInitial * (1 << exponent), configuration.storeRetryMax)
        let reason =
            "StoreRefused: the store refused this seller's rotated pair (\(error)); kept in memory, next try \(retryAt)"
        if refused.refusals == 1 {
            logger.error(
                """
                the store refused this seller's rotated pair; it is kept in memory and the write is retried; \
                other sellers are not held back
                """,
                metadata: key.metadata([
                    "outcome": "commit_refused", "request_id": "\(grant.requestID ?? "")", "error": "\(error)",
                ]))
        }
        do {
            try await store.noteRefusedPair(
                account: key, owner: configuration.leaseOwner, reason: reason,
                until: retryAt + configuration.leaseDuration, now: now)
        } catch {
            _ = storeFailed("note a refused pair", error, account: nil)
        }
        return .storeFailed(message: reason, retryAt: retryAt)
    }

    /// Logs once per seller what was odd about its answers: a lifetime so
    /// short that the minimum interval decides, or values that were sanitized.
    private func noteAnomalies(_ grant: TokenGrant, account key: AccountKey) {
        var anomalies = grant.anomalies
        if configuration.policy.lifetimeIsAnomalous(grant) {
            anomalies.append(
                "access token lifetime \(configuration.policy.effectiveLifetime(of: grant).seconds) s is at most "
                    + "refresh.min_interval_seconds (\(configuration.policy.minimumInterval.seconds) s)")
        }
        guard !anomalies.isEmpty else { return }
        let details = key.metadata([
            "request_id": "\(grant.requestID ?? "")", "anomalies": "\(anomalies.joined(separator: "; "))",
        ])
        if anomaliesReported.insert(key).inserted {
            logger.warning(
                "gateway anomaly: the answer was odd and was sanitized; the rotation is stored", metadata: details)
        } else {
            logger.debug("gateway anomaly again", metadata: details)
        }
    }

    private func handle(_ failure: GatewayFailure, for account: Account) async -> RefreshOutcome {
        let now = clock.now()
        let app = account.app
        switch failure.failureClass {
        case .accountRejected:
            // This app's breaker: another app's sellers revoking it say
            // nothing of this app's gateway, key or region.
            lanes[app, default: newLane(for: app)].breaker.record(rejected: true, at: now)
            if lanes[app]!.breaker.holds(at: now) {
                return await holdRejection(failure, for: account, now: now)
            }
            // A call whose answer was lost may have rotated the token: its
            // rejection now is not the seller's doing.
            if account.lastAnswerLost {
                return await markReauthRequired(
                    account, reason: StatusReason.rotationLost, requestID: account.lastRequestID ?? failure.requestID)
            }
            return await markReauthRequired(account, reason: failure.code, requestID: failure.requestID)
        case .configuration:
            configurationRejected(failure, account: account.key, now: now)
            // Neither the attempt count nor the deadline moves: the account is
            // not to blame, and it is held back in memory until a probe of its
            // app succeeds (its stored deadline has passed: at a restart it is
            // due at once).
            await recordFailure(
                account, failure, failedAttempts: account.failedAttempts, nextRefreshAt: account.nextRefreshAt ?? now)
            return .configurationRejected(failure)
        case .transient, .throttled:
            let attempts = account.failedAttempts + 1
            var delay = configuration.policy.retryDelay(
                failedAttempts: attempts, now: now, expireTime: account.expireTime, using: &random)
            if case .throttled(let retryAfter) = failure.failureClass {
                pause(app, until: now + retryAfter, failure: failure)
                delay = max(delay, retryAfter)
            }
            let retryAt = now + delay
            await recordFailure(account, failure, failedAttempts: attempts, nextRefreshAt: retryAt)
            return .failed(failure, retryAt: retryAt)
        }
    }

    /// The breaker holds this rejection: the seller stays active (its access
    /// token still works) and waits, off the heap, for the gateway to accept a
    /// refresh token of its app again; one held seller of the app is retried
    /// per probe interval.
    private func holdRejection(_ failure: GatewayFailure, for account: Account, now: Timestamp) async -> RefreshOutcome
    {
        let retryAt = now + configuration.configurationProbeInterval
        await recordFailure(account, failure, failedAttempts: account.failedAttempts + 1, nextRefreshAt: retryAt)
        return .heldByBreaker(failure)
    }

    /// Marks the account `reauth_required` if its stored refresh token is still
    /// the one we hold; otherwise it was a lost race and the stored state stands.
    private func markReauthRequired(_ account: Account, reason: String, requestID: String?) async -> RefreshOutcome {
        var delay = configuration.storeRetryInitial
        while true {
            do {
                let marked = try await store.markReauthRequired(
                    account: account.key, sent: account.refreshToken, reason: reason, requestID: requestID,
                    now: clock.now())
                storeWorked()
                if marked { return .reauthRequired(reason: reason, requestID: requestID) }
                await releaseLease(account.key)
                return .skipped(.tokenChanged, nextDue: clock.now())
            } catch {
                _ = storeFailed("mark the account reauth_required", error, account: account.key)
                // Retried rather than rescheduled: rescheduling would send the
                // dead refresh token to the gateway again.
                guard await sleep(until: clock.now() + delay) else {
                    return .storeFailed(message: "\(error)", retryAt: clock.now())
                }
                delay = min(delay * 2, configuration.storeRetryMax)
            }
        }
    }

    private func recordFailure(
        _ account: Account, _ failure: GatewayFailure, failedAttempts: Int, nextRefreshAt: Timestamp
    ) async {
        do {
            try await store.recordFailure(
                account: account.key, owner: configuration.leaseOwner, failure: failure,
                failedAttempts: failedAttempts, nextRefreshAt: nextRefreshAt, now: clock.now())
            storeWorked()
        } catch {
            // The retry is scheduled in memory anyway; the lease expires on its own.
            _ = storeFailed("record a failed attempt", error, account: account.key)
            await releaseLease(account.key)
        }
    }

    private func releaseLease(_ key: AccountKey) async {
        do {
            try await store.releaseLease(account: key, owner: configuration.leaseOwner)
            storeWorked()
        } catch {
            _ = storeFailed("release the lease", error, account: key)
        }
    }
}
