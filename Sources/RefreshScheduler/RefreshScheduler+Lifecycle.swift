import Logging
import TokenKeeperCore

extension RefreshScheduler {
    /// Loads the schedule, reports ``SchedulerEvent/ready(_:)``, then refreshes
    /// accounts as they fall due until cancelled or ``stop()`` is called.
    ///
    /// On cancellation no new work starts; attempts in flight finish and commit
    /// (bounded by ``RefreshSchedulerConfiguration/shutdownGracePeriod``) — a
    /// call is never cut short, because the gateway may already have rotated
    /// the token. Then it returns.
    ///
    /// - Throws: The store's error when the schedule cannot be loaded;
    ///   ``RefreshSchedulerError/alreadyStarted`` on a second call.
    public func run() async throws {
        guard phase == .idle else { throw RefreshSchedulerError.alreadyStarted }
        phase = .running
        // The expiries the store listed (those within the hour after the
        // deadline), for planning the starts the rate allows after READY=1;
        // the schedule itself (48 bytes an account) is gone by then.
        var expiries: [AccountKey: Timestamp] = [:]
        do {
            // The cursor first: a change made while the schedule loads is
            // then seen again at the first tick rather than missed.
            cursor = try await store.changes(since: nil).cursor
            let schedule = try await store.loadSchedule()
            let now = clock.now()
            queue.load(schedule)
            var apps: Set<AppName> = []
            var lastApp: AppName?
            for account in schedule {
                if let due = account.due, let expiry = account.expireTime {
                    expiries[account.key] = expiry
                    if expiry - due < expiryWatchWindow { nearExpiry[account.key] = expiry }
                }
                // A store lists an app's accounts together: one set insert per run of them.
                if account.key.app != lastApp {
                    lastApp = account.key.app
                    apps.insert(account.key.app)
                }
            }
            // Said at start, not when the first of them falls due.
            for app in apps.sorted() where gateways[app] == nil { noteMissingGateway(app) }
            for key in forced where !inFlight.contains(key) {
                queue.schedule(key, at: now)
            }
            leadIsStale = true
        } catch {
            phase = .stopped
            answerBatches(for: Array(batchesByAccount.keys), with: .notAttempted)
            timer.cancel()
            throw error
        }
        let now = clock.now()
        nextTickAt = now + configuration.tickInterval
        let ready = snapshot()
        logger.info(
            "schedule loaded",
            metadata: [
                "accounts": "\(ready.scheduled)", "next_refresh": "\(ready.nextDue.map { "\($0)" } ?? "none")",
                "concurrency": "\(configuration.concurrency)",
                "max_calls_per_second": "\(configuration.maxCallsPerSecond.map { "\($0)" } ?? "unlimited")",
                "apps": "\(gateways.keys.sorted().map(\.rawValue).joined(separator: ","))",
            ])
        emit(.ready(ready))
        // The need at the stored times first: a shortage is told as it is.
        planLead()
        planStartsTheRateAllows(expiries: expiries, now: clock.now())
        expiries = [:]
        pump()

        await withTaskCancellationHandler {
            await waitForStopRequest()
        } onCancel: {
            Task { await self.stop() }
        }
        await drainAndStop()
    }

    private func waitForStopRequest() async {
        guard !stopRequested else { return }
        await withCheckedContinuation { stopWaiter = $0 }
    }

    private func drainAndStop() async {
        phase = .stopping
        dismissCallWaiters()
        let now = clock.now()
        shutdownDeadline = now + configuration.shutdownGracePeriod
        logger.notice(
            "stopping: no new refreshes; waiting for those in flight",
            metadata: [
                "in_flight": "\(inFlight.count)", "grace_seconds": "\(configuration.shutdownGracePeriod.seconds)",
            ])
        answerBatches(for: batchesByAccount.keys.filter { !inFlight.contains($0) }, with: .notAttempted)
        pump()
        if !inFlight.isEmpty {
            await withCheckedContinuation { drainWaiter = $0 }
        }
        if !inFlight.isEmpty {
            logger.warning(
                "stopped with refreshes still in flight; their leases expire on their own",
                metadata: ["sellers": "\(inFlight.sorted().map(\.description).joined(separator: ","))"])
        }
        phase = .stopped
        // Store retries still waiting make one last attempt now and hand over
        // what still cannot be stored (``SchedulerEvent/rotationUnstored``);
        // run() returns only after that, while the store is still open.
        let parked = sleepers
        sleepers.removeAll()
        for sleeper in parked {
            runningTasks += 1
            sleeper.continuation.resume(returning: false)
        }
        if unstoredPairs > 0 {
            // Not cancellable: these attempts hold rotated pairs. Each makes
            // its last attempt now (waits return at once once stopped).
            await withCheckedContinuation { unstoredPairsWaiter = $0 }
        }
        await storeOrHandOverRefusedPairs()
        answerBatches(for: Array(batchesByAccount.keys), with: .notAttempted)
        timer.cancel()
        emit(.stopped(snapshot()))
        logger.notice("stopped")
    }

    /// Ends the wait for attempts in flight: all done, or the grace period is over.
    func endDrain() {
        drainWaiter?.resume()
        drainWaiter = nil
    }

    /// Hands `outcome` to every ``refreshNow(_:)`` caller waiting for these accounts.
    func answerBatches(for keys: some Sequence<AccountKey>, with outcome: RefreshOutcome) {
        for key in keys {
            guard let ids = batchesByAccount.removeValue(forKey: key) else { continue }
            for id in ids {
                guard var batch = batches[id] else { continue }
                batch.results[key] = outcome
                batch.remaining.remove(key)
                if batch.remaining.isEmpty {
                    batches[id] = nil
                    batch.continuation.resume(returning: batch.results)
                } else {
                    batches[id] = batch
                }
            }
        }
    }

    /// Pairs the store refused for their sellers' own values: one last try
    /// each, then handed over to be kept outside the store.
    private func storeOrHandOverRefusedPairs() async {
        let refused = refusedPairs
        refusedPairs.removeAll()
        for (key, pair) in refused.sorted(by: { $0.key < $1.key }) {
            do {
                if try await store.commitRotation(
                    account: key, sent: pair.sent, grant: pair.grant, nextRefreshAt: pair.nextDue, now: clock.now())
                {
                    continue
                }
                logger.error(
                    "the stored refresh token changed while the store refused this seller's pair; the pair is handed over",
                    metadata: key.metadata(["outcome": "fence_lost"]))
                emit(.rotationUnstored(account: key, grant: pair.grant, replacing: pair.sent))
            } catch {
                handOverUnstored(pair.grant, account: key, sent: pair.sent, error: error)
            }
        }
    }
}
