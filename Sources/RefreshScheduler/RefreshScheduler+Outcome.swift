import Logging
import TokenKeeperCore

extension RefreshScheduler {
    /// Applies an attempt's outcome: log it, reschedule or drop the account,
    /// report it, answer ``refreshNow(_:)`` callers, start what is next.
    func finish(_ job: Job, _ result: AttemptResult) {
        let sellerID = job.sellerID
        let outcome = result.outcome
        inFlight.remove(sellerID)
        runningTasks -= 1
        if job.isProbe { probeInFlight = false }
        let now = clock.now()
        log(outcome, sellerID: sellerID)

        switch outcome {
        case .refreshed(let requestID, let nextDue, let isFinalGrant):
            refreshedCount += 1
            breaker.record(rejected: false, at: now)
            if breakerProbe == sellerID { massRejectionEnded(sellerID) }
            reschedule(sellerID, at: nextDue)
            emit(.refreshed(sellerID: sellerID, requestID: requestID, nextDue: nextDue, isFinalGrant: isFinalGrant))
        case .failed(let failure, let retryAt):
            failedCount += 1
            reschedule(sellerID, at: retryAt)
            emit(.failed(sellerID: sellerID, failure: failure, nextDue: retryAt))
        case .configurationRejected:
            failedCount += 1
            reschedule(sellerID, at: now)
        case .heldByBreaker(let failure):
            holdByBreaker(sellerID, failure, now: now)
        case .reauthRequired(let reason, let requestID):
            reauthRequiredCount += 1
            if breakerProbe == sellerID { massRejectionOutlastedHold() }
            // Never again to the gateway: only a re-authorization or re-import
            // (seen as a change) brings it back.
            queue.remove(sellerID)
            noteExpiry(sellerID, nil, due: nil)
            emit(.reauthRequired(sellerID: sellerID, reason: reason, requestID: requestID))
        case .skipped(_, let nextDue):
            if let nextDue { reschedule(sellerID, at: nextDue) } else { queue.remove(sellerID) }
        case .busy(let until):
            reschedule(sellerID, at: until + configuration.busyLeaseMargin)
        case .storeFailed(_, let retryAt):
            reschedule(sellerID, at: retryAt)
        case .notFound:
            queue.remove(sellerID)
            noteExpiry(sellerID, nil, due: nil)
        case .notAttempted:
            reschedule(sellerID, at: now)
        }

        if breakerProbe == sellerID, !outcome.judgesTheRefreshToken, !queue.contains(sellerID) {
            breakerProbeLeft(now: now)
        }
        if job.isProbe, configurationFailure != nil {
            if result.calledGateway && outcome.judgesTheRefreshToken {
                recoverFromConfigurationFailure()
            } else if !result.calledGateway {
                // The probe never reached the gateway (not due, busy, …):
                // another account may try at once.
                nextProbeAt = now
            }
        }
        answerBatches(for: [sellerID], with: outcome)
        if phase == .stopping, inFlight.isEmpty { endDrain() }
        pump()
    }

    /// Puts the account back on the heap, unless this is a one-shot
    /// (``refreshNow(_:)`` without ``run()``) or the scheduler is stopping.
    func reschedule(_ sellerID: String, at due: Timestamp) {
        guard phase == .running else { return }
        queue.schedule(sellerID, at: due)
        // New deadlines may crowd together (the jitter of sellers refreshed
        // one after another): the lead is planned again at the next tick.
        leadIsStale = true
    }

    // MARK: - Mass rejections

    private func holdByBreaker(_ sellerID: String, _ failure: GatewayFailure, now: Timestamp) {
        let first = heldByBreaker.isEmpty
        heldByBreaker[sellerID] = failure
        if first {
            logger.error(
                """
                the gateway rejects the refresh tokens of many sellers at once (\(failure.code)): a platform \
                incident, a wrong regional gateway.url or an app-level change; sellers rejected now are held \
                active, not marked, and one is retried every \(configuration.configurationProbeInterval.seconds) s; \
                they are marked after \(configuration.massRejection.hold.seconds) s of rejections
                """,
                metadata: ["code": "\(failure.code)", "seller": "\(sellerID)"])
            emit(.degraded(.massRejection(code: failure.code, held: 1)))
        }
        if breakerProbe == sellerID || breakerProbe == nil {
            // This seller probes again after the interval; the rest wait.
            breakerProbe = sellerID
            heldByBreaker[sellerID] = nil
            reschedule(sellerID, at: now + configuration.configurationProbeInterval)
        } else {
            queue.remove(sellerID)
        }
    }

    /// The probe left the story (removed, disabled, re-authorized): another
    /// held seller probes instead, or the held ones would wait for ever.
    func breakerProbeLeft(now: Timestamp) {
        breakerProbe = nil
        guard let next = heldByBreaker.keys.first else { return }
        breakerProbe = next
        heldByBreaker[next] = nil
        reschedule(next, at: now + configuration.configurationProbeInterval)
    }

    /// A held seller's refresh token was accepted: the rejections were a
    /// glitch. Every held seller is tried again at once.
    private func massRejectionEnded(_ probe: String) {
        breaker.reset()
        breakerProbe = nil
        let held = heldByBreaker
        heldByBreaker.removeAll()
        logger.notice(
            "the gateway accepts refresh tokens again; the held sellers are tried again now",
            metadata: ["held": "\(held.count)", "seller": "\(probe)"])
        let now = clock.now()
        for sellerID in held.keys { reschedule(sellerID, at: now) }
        if let failure = held.values.first { emit(.recovered(.massRejection(code: failure.code, held: held.count))) }
    }

    /// The rejections went on past the hold: the held sellers are tried
    /// again and marked as usual.
    private func massRejectionOutlastedHold() {
        breakerProbe = nil
        let held = heldByBreaker
        heldByBreaker.removeAll()
        logger.error(
            "rejections went on past refresh.mass_rejection.hold_hours: the held sellers are tried once more and marked as usual",
            metadata: ["held": "\(held.count)"])
        let now = clock.now()
        for sellerID in held.keys { reschedule(sellerID, at: now) }
        if let failure = held.values.first { emit(.recovered(.massRejection(code: failure.code, held: held.count))) }
    }

    // MARK: - Trouble that holds everyone back

    func configurationRejected(_ failure: GatewayFailure, sellerID: String, now: Timestamp) {
        guard phase == .running else {
            logger.error(
                "the gateway rejects our configuration; no account is to blame",
                metadata: metadata(for: failure, sellerID: sellerID))
            return
        }
        guard configurationFailure == nil else {
            logger.debug("configuration still rejected", metadata: metadata(for: failure, sellerID: sellerID))
            return
        }
        configurationFailure = failure
        nextProbeAt = max(nextProbeAt, now + configuration.configurationProbeInterval)
        var details = metadata(for: failure, sellerID: sellerID)
        details["probe_interval_seconds"] = "\(configuration.configurationProbeInterval.seconds)"
        // One line for the whole episode, not one per seller.
        logger.error(
            """
            the gateway rejects our configuration (\(failure.code)): check app.key, the app secret and \
            the system clock; no account is marked, refreshing is held back and one account is tried \
            at a time until it works; send SIGHUP after fixing it
            """,
            metadata: details)
        emit(.degraded(.configuration(failure)))
    }

    private func recoverFromConfigurationFailure() {
        guard let failure = configurationFailure else { return }
        configurationFailure = nil
        logger.notice("the gateway accepts our configuration again; refreshing resumes")
        emit(.recovered(.configuration(failure)))
    }

    func pause(until end: Timestamp, failure: GatewayFailure) {
        if let pausedUntil, pausedUntil >= end { return }
        let wasPaused = pausedUntil.map { $0 > clock.now() } ?? false
        pausedUntil = end
        if !wasPaused {
            logger.warning(
                "the gateway throttles us; all calls pause",
                metadata: ["until": "\(end)", "code": "\(failure.code)", "request_id": "\(failure.requestID ?? "")"])
        }
    }

    func pairNotDurable(_ sellerID: String, requestID: String?, error: any Error, scope: StoreFailureScope) {
        let message = "\(error)"
        if scope == .contention {
            logContention(["seller": "\(sellerID)", "request_id": "\(requestID ?? "")", "error": "\(message)"])
            return
        }
        guard scope == .store else {
            // This account's own values: it alone waits (still in flight, its
            // refresh token never sent), everyone else goes on.
            logger.error(
                """
                the store refused this seller's rotated pair; it is kept in memory and the write is retried; \
                other sellers are not held back
                """,
                metadata: [
                    "seller": "\(sellerID)", "outcome": "commit_refused", "request_id": "\(requestID ?? "")",
                    "error": "\(message)",
                ])
            return
        }
        let first = undurable.isEmpty
        undurable[sellerID] = message
        logger.critical(
            """
            a rotated token pair could not be stored; it is kept in memory, all refreshes are held \
            and the write is retried until it succeeds
            """,
            metadata: [
                "seller": "\(sellerID)", "outcome": "commit_failed", "request_id": "\(requestID ?? "")",
                "error": "\(message)",
            ])
        if first { emit(.degraded(.storage(message: message))) }
    }

    func pairBecameDurable(_ sellerID: String, afterFailures failures: Int) {
        guard let message = undurable.removeValue(forKey: sellerID) else { return }
        if failures > 0 {
            logger.notice(
                "rotated token pair stored after failed writes",
                metadata: ["seller": "\(sellerID)", "failed_writes": "\(failures)"])
        }
        if undurable.isEmpty { emit(.recovered(.storage(message: message))) }
    }

    /// Logs the first store failure of a streak as an error and the rest at
    /// debug, so that an unavailable store does not write one line per seller.
    /// Returns when to try this account again: backed off by this seller's
    /// own failures in a row (a batch of failed leases must not make the
    /// k-th seller wait 2^k seconds), and sooner when a write works.
    func storeFailed(_ operation: String, _ error: any Error, sellerID: String?) -> Timestamp {
        var details: Logger.Metadata = ["operation": "\(operation)", "error": "\(error)"]
        if let sellerID { details["seller"] = "\(sellerID)" }
        if StoreFailureScope.of(error) == .contention {
            // Another process's transaction: not a failure. Soon again, and
            // at once when a write works.
            if let sellerID, parkedByStore[sellerID] == nil { parkedByStore[sellerID] = 0 }
            logContention(details)
            return clock.now() + Self.contentionRetry
        }
        storeFailureStreak += 1
        if storeFailureStreak == 1 {
            logger.error("the store failed; retrying with backoff", metadata: details)
        } else {
            logger.debug("the store failed again", metadata: details)
        }
        var failures = storeFailureStreak
        if let sellerID {
            failures = parkedByStore[sellerID, default: 0] + 1
            parkedByStore[sellerID] = failures
        }
        let exponent = min(failures - 1, 16)
        var delay = min(configuration.storeRetryInitial * (1 << exponent), configuration.storeRetryMax)
        let now = clock.now()
        if let sellerID, let expiry = nearExpiry[sellerID], expiry > now {
            // Never past the token's expiry: half the time left, again and
            // again, while there is any.
            delay = min(delay, max((expiry - now) / 2, Self.contentionRetry))
        }
        return now + delay
    }

    /// Sellers whose expiry is kept (``nearExpiry``): due less than four of
    /// the longest store backoffs before it (2 minutes by default). Further
    /// from it, a run of backoffs overshoots it by less than one backoff, and
    /// the first write that works wakes every parked seller anyway; keeping
    /// the expiry of every seller would cost a million-seller fleet tens of
    /// megabytes.
    var expiryWatchWindow: Duration { configuration.storeRetryMax * 4 }

    /// Keeps or forgets a seller's expiry as its deadline moves.
    func noteExpiry(_ sellerID: String, _ expireTime: Timestamp?, due: Timestamp?) {
        if let due, let expireTime, expireTime - due < expiryWatchWindow {
            nearExpiry[sellerID] = expireTime
        } else if !nearExpiry.isEmpty {
            nearExpiry[sellerID] = nil
        }
    }

    /// How soon a write that met another process's lock is tried again
    /// (the store already waited its busy timeout for it).
    static let contentionRetry: Duration = .milliseconds(100)

    /// One warning per episode of contention, not one per seller.
    func logContention(_ details: Logger.Metadata) {
        contentionStreak += 1
        guard contentionStreak == 1 else { return }
        logger.warning(
            "another process holds the store's write lock (a command's transaction); waiting for it", metadata: details)
    }

    /// A write worked: the store is back, and every seller parked by its
    /// failures is tried again now rather than at the end of its backoff.
    func storeWorked() {
        contentionStreak = 0
        guard storeFailureStreak > 0 || !parkedByStore.isEmpty else { return }
        if storeFailureStreak > 0 {
            logger.notice("the store works again", metadata: ["failures": "\(storeFailureStreak)"])
        }
        storeFailureStreak = 0
        let parked = parkedByStore.keys
        parkedByStore.removeAll()
        let now = clock.now()
        for sellerID in parked where !inFlight.contains(sellerID) && queue.contains(sellerID) {
            reschedule(sellerID, at: now)
        }
    }

    /// Warns once when the local clock and the gateway's `Date` header
    /// disagree by over a minute. Schedules do not depend on it (they run from
    /// our clock and `expires_in`), but readers compare `expire_time` with theirs.
    func noteGatewayClock(_ grant: TokenGrant) {
        guard let gatewayDate = grant.gatewayDate else { return }
        let skewMs = (grant.receivedAt - gatewayDate).wholeMilliseconds
        let skewed = skewMs.magnitude > 60_000
        if skewed, !clockSkewReported {
            logger.warning(
                "the local clock and the gateway's clock disagree by over a minute; check time synchronization",
                metadata: ["skew_seconds": "\(skewMs / 1000)", "request_id": "\(grant.requestID ?? "")"])
        } else if !skewed, clockSkewReported {
            logger.notice("the local clock agrees with the gateway's again")
        }
        clockSkewReported = skewed
    }

    // MARK: - Logging

    private func metadata(for failure: GatewayFailure, sellerID: String) -> Logger.Metadata {
        var details: Logger.Metadata = [
            "seller": "\(sellerID)", "code": "\(failure.code)", "message": "\(failure.message)",
        ]
        if let requestID = failure.requestID { details["request_id"] = "\(requestID)" }
        if let status = failure.httpStatus { details["http_status"] = "\(status)" }
        return details
    }

    /// One line per attempt: seller, outcome, request id. Never a token.
    private func log(_ outcome: RefreshOutcome, sellerID: String) {
        switch outcome {
        case .refreshed(let requestID, let nextDue, let isFinalGrant):
            let details: Logger.Metadata = [
                "seller": "\(sellerID)", "outcome": "refreshed", "request_id": "\(requestID ?? "")",
                "next_refresh": "\(nextDue)",
            ]
            if isFinalGrant {
                logger.notice(
                    """
                    refreshed for the last time: the gateway will not refresh this seller again; it must \
                    authorize again before its access token expires
                    """,
                    metadata: details.merging(["outcome": "refreshed_final", "expires": "\(nextDue)"]) { $1 })
            } else {
                logger.info("refreshed", metadata: details)
            }
        case .failed(let failure, let retryAt):
            var details = metadata(for: failure, sellerID: sellerID)
            details["retry_at"] = "\(retryAt)"
            if case .throttled = failure.failureClass {
                details["outcome"] = "throttled"
                logger.warning("refresh throttled; will retry", metadata: details)
            } else if failure.isUnknownCode {
                details["outcome"] = "transient"
                logger.error(
                    "refresh failed with a gateway code we do not know; treated as transient", metadata: details)
            } else {
                details["outcome"] = "transient"
                logger.warning("refresh failed; will retry", metadata: details)
            }
        case .configurationRejected(let failure):
            var details = metadata(for: failure, sellerID: sellerID)
            details["outcome"] = "configuration_rejected"
            logger.debug("refresh held back: configuration rejected", metadata: details)
        case .heldByBreaker(let failure):
            var details = metadata(for: failure, sellerID: sellerID)
            details["outcome"] = "held"
            logger.warning("refresh token rejected during a mass rejection: held, not marked", metadata: details)
        case .reauthRequired(let reason, let requestID):
            logger.warning(
                "seller must authorize again",
                metadata: [
                    "seller": "\(sellerID)", "outcome": "reauth_required", "reason": "\(reason)",
                    "request_id": "\(requestID ?? "")",
                ])
        case .skipped(let reason, let nextDue):
            let details: Logger.Metadata = [
                "seller": "\(sellerID)", "outcome": "skipped", "reason": "\(reason.rawValue)",
                "next_refresh": "\(nextDue.map { "\($0)" } ?? "none")",
            ]
            switch reason {
            case .notDue: logger.info("skipped: refreshed by another process", metadata: details)
            case .inactive: logger.info("skipped: account not active", metadata: details)
            case .tokenChanged: logger.notice("skipped: the stored refresh token changed meanwhile", metadata: details)
            case .awaitingExpiry, .heldBack: logger.debug("skipped", metadata: details)
            }
        case .busy(let until):
            logger.info(
                "skipped: another process holds the lease",
                metadata: ["seller": "\(sellerID)", "outcome": "busy", "lease_until": "\(until)"])
        case .storeFailed:
            break  // logged where it happened, once per streak
        case .notFound:
            logger.info("skipped: seller no longer stored", metadata: ["seller": "\(sellerID)", "outcome": "removed"])
        case .notAttempted:
            logger.debug("not attempted: stopping", metadata: ["seller": "\(sellerID)", "outcome": "not_attempted"])
        }
    }
}
