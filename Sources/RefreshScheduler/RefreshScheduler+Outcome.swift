import Logging
import TokenKeeperCore

extension RefreshScheduler {
    /// Applies an attempt's outcome: log it, reschedule or drop the account,
    /// report it, answer ``refreshNow(_:)`` callers, start what is next.
    func finish(_ job: Job, _ result: AttemptResult) {
        let key = job.account
        let app = key.app
        let outcome = result.outcome
        inFlight.remove(key)
        runningTasks -= 1
        if job.isProbe { lanes[app]?.probeInFlight = false }
        let now = clock.now()
        log(outcome, account: key)

        switch outcome {
        case .refreshed(let requestID, let nextDue, let isFinalGrant):
            refreshedCount += 1
            lanes[app, default: newLane(for: app)].breaker.record(rejected: false, at: now)
            if lanes[app]?.breakerProbe == key { massRejectionEnded(key) }
            reschedule(key, at: nextDue)
            emit(.refreshed(account: key, requestID: requestID, nextDue: nextDue, isFinalGrant: isFinalGrant))
        case .failed(let failure, let retryAt):
            failedCount += 1
            reschedule(key, at: retryAt)
            emit(.failed(account: key, failure: failure, nextDue: retryAt))
        case .configurationRejected:
            failedCount += 1
            reschedule(key, at: now)
        case .heldByBreaker(let failure):
            holdByBreaker(key, failure, now: now)
        case .reauthRequired(let reason, let requestID):
            reauthRequiredCount += 1
            if lanes[app]?.breakerProbe == key { massRejectionOutlastedHold(app) }
            // Never again to the gateway: only a re-authorization or re-import
            // (seen as a change) brings it back.
            queue.remove(key)
            noteExpiry(key, nil, due: nil)
            emit(.reauthRequired(account: key, reason: reason, requestID: requestID))
        case .skipped(_, let nextDue):
            if let nextDue { reschedule(key, at: nextDue) } else { queue.remove(key) }
        case .busy(let until):
            reschedule(key, at: until + configuration.busyLeaseMargin)
        case .storeFailed(_, let retryAt):
            reschedule(key, at: retryAt)
        case .notFound:
            queue.remove(key)
            noteExpiry(key, nil, due: nil)
        case .notAttempted:
            reschedule(key, at: now)
        }

        if lanes[app]?.breakerProbe == key, !outcome.judgesTheRefreshToken, !queue.contains(key) {
            breakerProbeLeft(app, now: now)
        }
        if job.isProbe, lanes[app]?.configurationFailure != nil {
            if result.calledGateway && outcome.judgesTheRefreshToken {
                recoverFromConfigurationFailure(of: app)
            } else if !result.calledGateway {
                // The probe never reached the gateway (not due, busy, …):
                // another account of the app may try at once.
                lanes[app]!.nextProbeAt = now
            }
        }
        answerBatches(for: [key], with: outcome)
        if phase == .stopping, inFlight.isEmpty { endDrain() }
        pump()
    }

    /// Puts the account back on the heap, unless this is a one-shot
    /// (``refreshNow(_:)`` without ``run()``) or the scheduler is stopping.
    func reschedule(_ key: AccountKey, at due: Timestamp) {
        guard phase == .running else { return }
        queue.schedule(key, at: due)
        // New deadlines may crowd together (the jitter of sellers refreshed
        // one after another): the lead is planned again at the next tick.
        leadIsStale = true
    }

    // MARK: - Mass rejections (each app's own)

    private func holdByBreaker(_ key: AccountKey, _ failure: GatewayFailure, now: Timestamp) {
        let app = key.app
        let first = lanes[app, default: newLane(for: app)].heldByBreaker.isEmpty
        lanes[app]!.heldByBreaker[key] = failure
        if first {
            logger.error(
                """
                the gateway rejects the refresh tokens of many sellers at once (\(failure.code)), all of one app: a \
                platform incident, a wrong regional gateway.url or an app-level change; its sellers rejected now are \
                held active, not marked, and one is retried every \(configuration.configurationProbeInterval.seconds) s; \
                they are marked after \(configuration.massRejection.hold.seconds) s of rejections; other apps go on
                """,
                metadata: key.metadata(["code": "\(failure.code)"]))
            emit(.degraded(.massRejection(app: app, code: failure.code, held: 1)))
        }
        if lanes[app]!.breakerProbe == key || lanes[app]!.breakerProbe == nil {
            // This seller probes again after the interval; the rest wait.
            lanes[app]!.breakerProbe = key
            lanes[app]!.heldByBreaker[key] = nil
            reschedule(key, at: now + configuration.configurationProbeInterval)
        } else {
            queue.remove(key)
        }
    }

    /// The app's probe left the story (removed, disabled, re-authorized):
    /// another held seller of the app probes instead, or the held ones would
    /// wait for ever.
    func breakerProbeLeft(_ app: AppName, now: Timestamp) {
        lanes[app]?.breakerProbe = nil
        guard let next = lanes[app]?.heldByBreaker.keys.first else { return }
        lanes[app]!.breakerProbe = next
        lanes[app]!.heldByBreaker[next] = nil
        reschedule(next, at: now + configuration.configurationProbeInterval)
    }

    /// A held seller's refresh token was accepted: the app's rejections were
    /// a glitch. Every seller of the app held is tried again at once.
    private func massRejectionEnded(_ probe: AccountKey) {
        let app = probe.app
        guard var lane = lanes[app] else { return }
        lane.breaker.reset()
        lane.breakerProbe = nil
        let held = lane.heldByBreaker
        lane.heldByBreaker.removeAll()
        lanes[app] = lane
        logger.notice(
            "the gateway accepts this app's refresh tokens again; its held sellers are tried again now",
            metadata: probe.metadata(["held": "\(held.count)"]))
        let now = clock.now()
        for key in held.keys { reschedule(key, at: now) }
        if let failure = held.values.first {
            emit(.recovered(.massRejection(app: app, code: failure.code, held: held.count)))
        }
    }

    /// The app's rejections went on past the hold: its held sellers are
    /// tried again and marked as usual.
    private func massRejectionOutlastedHold(_ app: AppName) {
        guard var lane = lanes[app] else { return }
        lane.breakerProbe = nil
        let held = lane.heldByBreaker
        lane.heldByBreaker.removeAll()
        lanes[app] = lane
        logger.error(
            "rejections went on past refresh.mass_rejection.hold_hours: the app's held sellers are tried once more and marked as usual",
            metadata: ["app": "\(app)", "held": "\(held.count)"])
        let now = clock.now()
        for key in held.keys { reschedule(key, at: now) }
        if let failure = held.values.first {
            emit(.recovered(.massRejection(app: app, code: failure.code, held: held.count)))
        }
    }

    // MARK: - One app's trouble

    /// The gateway rejects the configuration of the account's app: that
    /// app's accounts are held back, one probing at a time; other apps go on.
    func configurationRejected(_ failure: GatewayFailure, account key: AccountKey, now: Timestamp) {
        let app = key.app
        guard phase == .running else {
            logger.error(
                "the gateway rejects the app's configuration; no account is to blame",
                metadata: metadata(for: failure, account: key))
            return
        }
        guard lanes[app]?.configurationFailure == nil else {
            logger.debug("configuration still rejected", metadata: metadata(for: failure, account: key))
            return
        }
        lanes[app, default: newLane(for: app)].configurationFailure = failure
        lanes[app]!.nextProbeAt = max(lanes[app]!.nextProbeAt, now + configuration.configurationProbeInterval)
        var details = metadata(for: failure, account: key)
        details["probe_interval_seconds"] = "\(configuration.configurationProbeInterval.seconds)"
        let keys = app == .default ? "app.key, the app secret" : "apps.\(app).key, the app's secret"
        // One line for the whole episode, not one per seller.
        logger.error(
            """
            the gateway rejects the configuration of app \(app) (\(failure.code)): check \(keys) and the system \
            clock; no account is marked, this app's refreshing is held back and one of its accounts is tried at a \
            time until it works (other apps go on); send SIGHUP after fixing it
            """,
            metadata: details)
        emit(.degraded(.configuration(app: app, failure)))
    }

    func recoverFromConfigurationFailure(of app: AppName) {
        guard let failure = lanes[app]?.configurationFailure else { return }
        lanes[app]!.configurationFailure = nil
        logger.notice(
            "the gateway accepts the app's configuration again; its refreshing resumes", metadata: ["app": "\(app)"])
        emit(.recovered(.configuration(app: app, failure)))
    }

    /// An app with accounts and no gateway: nothing to call. Reported once,
    /// as a configuration failure of that app; its accounts wait, never
    /// marked, until ``update(gateways:)`` brings a gateway.
    func noteMissingGateway(_ app: AppName) {
        guard lanes[app]?.gatewayMissing != true else { return }
        lanes[app, default: newLane(for: app)].gatewayMissing = true
        let failure = Self.appNotConfigured(app)
        logger.error(
            """
            accounts of app \(app) are stored but no gateway is configured for it: they are not refreshed \
            (nor marked) until the configuration has the app again
            """,
            metadata: ["app": "\(app)", "code": "\(failure.code)"])
        guard lanes[app]!.configurationFailure == nil else { return }
        lanes[app]!.configurationFailure = failure
        emit(.degraded(.configuration(app: app, failure)))
    }

    /// Pauses the app's calls until `end` (its gateway throttles it); other
    /// apps' calls go on.
    func pause(_ app: AppName, until end: Timestamp, failure: GatewayFailure) {
        // The gateway throttles the app's key, whoever calls: readers' proxied calls wait too.
        callBudgets.pauseProxied(app, until: end)
        guard lanes[app, default: newLane(for: app)].pause(until: end, now: clock.now()) else { return }
        logger.warning(
            "the gateway throttles this app; its calls pause",
            metadata: [
                "app": "\(app)", "until": "\(end)", "code": "\(failure.code)",
                "request_id": "\(failure.requestID ?? "")",
            ])
    }

    // MARK: - The store's trouble, which holds everyone back

    func pairNotDurable(_ key: AccountKey, requestID: String?, error: any Error, scope: StoreFailureScope) {
        let message = "\(error)"
        if scope == .contention {
            logContention(key.metadata(["request_id": "\(requestID ?? "")", "error": "\(message)"]))
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
                metadata: key.metadata([
                    "outcome": "commit_refused", "request_id": "\(requestID ?? "")", "error": "\(message)",
                ]))
            return
        }
        let first = undurable.isEmpty
        undurable[key] = message
        logger.critical(
            """
            a rotated token pair could not be stored; it is kept in memory, all refreshes are held \
            and the write is retried until it succeeds
            """,
            metadata: key.metadata([
                "outcome": "commit_failed", "request_id": "\(requestID ?? "")", "error": "\(message)",
            ]))
        if first { emit(.degraded(.storage(message: message))) }
    }

    func pairBecameDurable(_ key: AccountKey, afterFailures failures: Int) {
        guard let message = undurable.removeValue(forKey: key) else { return }
        if failures > 0 {
            logger.notice(
                "rotated token pair stored after failed writes",
                metadata: key.metadata(["failed_writes": "\(failures)"]))
        }
        if undurable.isEmpty { emit(.recovered(.storage(message: message))) }
    }

    /// Logs the first store failure of a streak as an error and the rest at
    /// debug, so that an unavailable store does not write one line per seller.
    /// Returns when to try this account again: backed off by this seller's
    /// own failures in a row (a batch of failed leases must not make the
    /// k-th seller wait 2^k seconds), and sooner when a write works.
    func storeFailed(_ operation: String, _ error: any Error, account key: AccountKey?) -> Timestamp {
        let details: Logger.Metadata = (key?.metadata() ?? [:]).merging([
            "operation": "\(operation)", "error": "\(error)",
        ]) { $1 }
        if StoreFailureScope.of(error) == .contention {
            // Another process's transaction: not a failure. Soon again, and
            // at once when a write works.
            if let key, parkedByStore[key] == nil { parkedByStore[key] = 0 }
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
        if let key {
            failures = parkedByStore[key, default: 0] + 1
            parkedByStore[key] = failures
        }
        let exponent = min(failures - 1, 16)
        var delay = min(configuration.storeRetryInitial * (1 << exponent), configuration.storeRetryMax)
        let now = clock.now()
        if let key, let expiry = nearExpiry[key], expiry > now {
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
    func noteExpiry(_ key: AccountKey, _ expireTime: Timestamp?, due: Timestamp?) {
        if let due, let expireTime, expireTime - due < expiryWatchWindow {
            nearExpiry[key] = expireTime
        } else if !nearExpiry.isEmpty {
            nearExpiry[key] = nil
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
        for key in parked where !inFlight.contains(key) && queue.contains(key) {
            reschedule(key, at: now)
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

    private func metadata(for failure: GatewayFailure, account key: AccountKey) -> Logger.Metadata {
        var details = key.metadata(["code": "\(failure.code)", "message": "\(failure.message)"])
        if let requestID = failure.requestID { details["request_id"] = "\(requestID)" }
        if let status = failure.httpStatus { details["http_status"] = "\(status)" }
        return details
    }

    /// One line per attempt: app, seller, outcome, request id. Never a token.
    private func log(_ outcome: RefreshOutcome, account key: AccountKey) {
        switch outcome {
        case .refreshed(let requestID, let nextDue, let isFinalGrant):
            let details = key.metadata([
                "outcome": "refreshed", "request_id": "\(requestID ?? "")", "next_refresh": "\(nextDue)",
            ])
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
            var details = metadata(for: failure, account: key)
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
            var details = metadata(for: failure, account: key)
            details["outcome"] = "configuration_rejected"
            logger.debug("refresh held back: configuration rejected", metadata: details)
        case .heldByBreaker(let failure):
            var details = metadata(for: failure, account: key)
            details["outcome"] = "held"
            logger.warning("refresh token rejected during a mass rejection: held, not marked", metadata: details)
        case .reauthRequired(let reason, let requestID):
            logger.warning(
                "seller must authorize again",
                metadata: key.metadata([
                    "outcome": "reauth_required", "reason": "\(reason)", "request_id": "\(requestID ?? "")",
                ]))
        case .skipped(let reason, let nextDue):
            let details = key.metadata([
                "outcome": "skipped", "reason": "\(reason.rawValue)",
                "next_refresh": "\(nextDue.map { "\($0)" } ?? "none")",
            ])
            switch reason {
            case .notDue: logger.info("skipped: refreshed by another process", metadata: details)
            case .inactive: logger.info("skipped: account not active", metadata: details)
            case .tokenChanged: logger.notice("skipped: the stored refresh token changed meanwhile", metadata: details)
            case .awaitingExpiry, .heldBack: logger.debug("skipped", metadata: details)
            }
        case .busy(let until):
            logger.info(
                "skipped: another process holds the lease",
                metadata: key.metadata(["outcome": "busy", "lease_until": "\(until)"]))
        case .storeFailed:
            break  // logged where it happened, once per streak
        case .notFound:
            logger.info("skipped: seller no longer stored", metadata: key.metadata(["outcome": "removed"]))
        case .notAttempted:
            logger.debug("not attempted: stopping", metadata: key.metadata(["outcome": "not_attempted"]))
        }
    }
}

extension AccountKey {
    /// A log line's fields for this account, `app` and `seller`, with `extra`.
    func metadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var details = extra
        details["app"] = "\(app)"
        details["seller"] = "\(sellerID)"
        return details
    }
}
