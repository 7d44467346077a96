import Logging
import TokenKeeperCore

extension RefreshScheduler {
    /// The timer fired: resume store retries that are due, end a shutdown wait
    /// that ran out, tick if it is time, start what is due, re-arm.
    func wake() async {
        // Re-arm from scratch after every wake-up, so that a platform timer
        // that drifted from the wall clock is corrected at least every tick.
        armedDeadline = nil
        let now = clock.now()
        noticeClockSetBack(now)
        resumeSleepers(dueBy: now)
        if phase == .stopping, let shutdownDeadline, now >= shutdownDeadline {
            // Once: the timer must not keep firing for a passed deadline
            // while the drain wait resumes.
            self.shutdownDeadline = nil
            endDrain()
        }
        await tickIfDue(now)
        pump()
    }

    /// A wall clock stepped back would push waits measured from the old time
    /// out by the size of the step: ticks (the watchdog's heartbeat), probes,
    /// store retries and the shutdown wait are brought back within their
    /// interval. Refresh deadlines stay: they are wall-clock moments by nature.
    private func noticeClockSetBack(_ now: Timestamp) {
        if let nextTickAt, nextTickAt - now > configuration.tickInterval {
            let step = nextTickAt - now - configuration.tickInterval
            logger.warning("the wall clock was set back", metadata: ["by_at_least_seconds": "\(step.seconds)"])
            self.nextTickAt = now
        }
        nextProbeAt = min(nextProbeAt, now + configuration.configurationProbeInterval)
        if let shutdownDeadline {
            self.shutdownDeadline = min(shutdownDeadline, now + configuration.shutdownGracePeriod)
        }
        for index in sleepers.indices {
            sleepers[index].until = min(sleepers[index].until, now + configuration.storeRetryMax)
        }
    }

    private func tickIfDue(_ now: Timestamp) async {
        guard phase == .running || phase == .stopping, !tickInProgress, let nextTickAt, now >= nextTickAt else {
            return
        }
        tickInProgress = true
        self.nextTickAt = now + configuration.tickInterval
        if phase == .running {
            await pickUpChanges()
        }
        tickInProgress = false
        // After the store answered: a scheduler stuck on its store stops
        // ticking, and the watchdog restarts it.
        emit(.tick(snapshot()))
    }

    /// Merges accounts changed by any process (CLI `add`, `import`, `enable`,
    /// `disable`, `remove`) into the heap.
    private func pickUpChanges() async {
        let changes: [ScheduledAccount]
        do {
            let answer = try await store.changes(since: cursor)
            storeWorked()
            cursor = answer.cursor
            changes = answer.changed
        } catch {
            _ = storeFailed("read changes", error, sellerID: nil)
            return
        }
        guard phase == .running else { return }
        for change in changes {
            // An attempt in flight reschedules its account when it ends (and
            // re-reads it under the lease first); a forced one is answered then.
            if inFlight.contains(change.sellerID) || forced.contains(change.sellerID) { continue }
            if let due = change.due {
                queue.schedule(change.sellerID, at: due)
            } else {
                queue.remove(change.sellerID)
            }
        }
        if !changes.isEmpty {
            logger.debug("picked up changes", metadata: ["accounts": "\(changes.count)"])
        }
    }

    /// Starts every due account the limits allow, overdue first, then re-arms.
    func pump() {
        let now = clock.now()
        while mayStartAttempt(now), let next = queue.peek(), next.due <= now {
            if bucket?.tryTake(now) == false { break }
            _ = queue.popDue(notAfter: now)
            start(next.sellerID, now: now)
        }
        arm(now)
        checkIdle()
    }

    private func mayStartAttempt(_ now: Timestamp) -> Bool {
        guard phase == .idle || phase == .running else { return false }
        guard inFlight.count < configuration.concurrency, undurable.isEmpty else { return false }
        if let pausedUntil {
            guard pausedUntil <= now else { return false }
            self.pausedUntil = nil
            logger.notice("throttling pause over; calls resume")
        }
        if configurationFailure != nil {
            return !probeInFlight && now >= nextProbeAt
        }
        return true
    }

    private func start(_ sellerID: String, now: Timestamp) {
        let isProbe = configurationFailure != nil
        if isProbe {
            probeInFlight = true
            nextProbeAt = now + configuration.configurationProbeInterval
            logger.debug("probing the gateway with one account", metadata: ["seller": "\(sellerID)"])
        }
        let job = Job(sellerID: sellerID, forced: forced.remove(sellerID) != nil, isProbe: isProbe)
        inFlight.insert(sellerID)
        runningTasks += 1
        // Unstructured on purpose: cancelling run() must not cut a call short.
        Task { await self.attempt(job) }
    }

    /// Arms the one timer to the earliest moment anything can happen.
    private func arm(_ now: Timestamp) {
        var deadline: Timestamp?
        func consider(_ moment: Timestamp) {
            deadline = deadline.map { min($0, moment) } ?? moment
        }
        if phase == .running || phase == .stopping, let nextTickAt { consider(nextTickAt) }
        for sleeper in sleepers { consider(sleeper.until) }
        if phase == .stopping, let shutdownDeadline { consider(shutdownDeadline) }
        if phase == .idle || phase == .running, inFlight.count < configuration.concurrency, undurable.isEmpty,
            let next = queue.peek()
        {
            var moment: Timestamp? = next.due
            if let pausedUntil { moment = max(next.due, pausedUntil) }
            if configurationFailure != nil {
                moment = probeInFlight ? nil : moment.map { max($0, nextProbeAt) }
            }
            if let candidate = moment {
                if let available = bucket?.nextAvailable(now) {
                    consider(max(candidate, available))
                } else {
                    consider(candidate)
                }
            }
        }
        guard let deadline else { return }
        let target = max(deadline, now)
        guard target != armedDeadline else { return }
        armedDeadline = target
        timer.arm(at: target)
    }

    /// Parks the calling attempt until `deadline` on the one timer. Returns
    /// false when the scheduler stopped meanwhile: give up.
    func sleep(until deadline: Timestamp) async -> Bool {
        guard phase != .stopped else { return false }
        runningTasks -= 1
        return await withCheckedContinuation { continuation in
            sleepers.append(Sleeper(until: deadline, continuation: continuation))
            arm(clock.now())
            checkIdle()
        }
    }

    func resumeSleepers(dueBy now: Timestamp) {
        guard sleepers.contains(where: { $0.until <= now }) else { return }
        let due = sleepers.filter { $0.until <= now }
        sleepers.removeAll { $0.until <= now }
        for sleeper in due {
            runningTasks += 1
            sleeper.continuation.resume(returning: true)
        }
    }

    func checkIdle() {
        guard runningTasks == 0, !idleWaiters.isEmpty else { return }
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }
}
