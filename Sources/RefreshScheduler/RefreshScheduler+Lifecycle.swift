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
        do {
            // The cursor first: a change made while the schedule loads is
            // then seen again at the first tick rather than missed.
            cursor = try await store.changes(since: nil).cursor
            let schedule = try await store.loadSchedule()
            let now = clock.now()
            queue.load(schedule)
            for account in schedule {
                if let due = account.due, let expiry = account.expireTime, expiry - due < expiryWatchWindow {
                    nearExpiry[account.sellerID] = expiry
                }
            }
            for sellerID in forced where !inFlight.contains(sellerID) {
                queue.schedule(sellerID, at: now)
            }
            leadIsStale = true
        } catch {
            phase = .stopped
            answerBatches(for: Array(batchesBySeller.keys), with: .notAttempted)
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
            ])
        emit(.ready(ready))
        planLead()
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
        let now = clock.now()
        shutdownDeadline = now + configuration.shutdownGracePeriod
        logger.notice(
            "stopping: no new refreshes; waiting for those in flight",
            metadata: [
                "in_flight": "\(inFlight.count)", "grace_seconds": "\(configuration.shutdownGracePeriod.seconds)",
            ])
        answerBatches(for: batchesBySeller.keys.filter { !inFlight.contains($0) }, with: .notAttempted)
        pump()
        if !inFlight.isEmpty {
            await withCheckedContinuation { drainWaiter = $0 }
        }
        if !inFlight.isEmpty {
            logger.warning(
                "stopped with refreshes still in flight; their leases expire on their own",
                metadata: ["sellers": "\(inFlight.sorted().joined(separator: ","))"])
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
        answerBatches(for: Array(batchesBySeller.keys), with: .notAttempted)
        timer.cancel()
        emit(.stopped(snapshot()))
        logger.notice("stopped")
    }

    /// Ends the wait for attempts in flight: all done, or the grace period is over.
    func endDrain() {
        drainWaiter?.resume()
        drainWaiter = nil
    }

    /// Hands `outcome` to every ``refreshNow(_:)`` caller waiting for these sellers.
    func answerBatches(for sellerIDs: some Sequence<String>, with outcome: RefreshOutcome) {
        for sellerID in sellerIDs {
            guard let ids = batchesBySeller.removeValue(forKey: sellerID) else { continue }
            for id in ids {
                guard var batch = batches[id] else { continue }
                batch.results[sellerID] = outcome
                batch.remaining.remove(sellerID)
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
        for (sellerID, pair) in refused.sorted(by: { $0.key < $1.key }) {
            do {
                if try await store.commitRotation(
                    sellerID: sellerID, sent: pair.sent, grant: pair.grant, nextRefreshAt: pair.nextDue,
                    now: clock.now())
                {
                    continue
                }
                logger.error(
                    "the stored refresh token changed while the store refused this seller's pair; the pair is handed over",
                    metadata: ["seller": "\(sellerID)", "outcome": "fence_lost"])
                emit(.rotationUnstored(sellerID: sellerID, grant: pair.grant, replacing: pair.sent))
            } catch {
                handOverUnstored(pair.grant, sellerID: sellerID, sent: pair.sent, error: error)
            }
        }
    }
}
