import Logging
import TokenKeeperCore

extension RefreshScheduler {
    /// The timer fired: resume store retries that are due, end a shutdown wait
    /// that ran out, tick if it is time, start what is due, re-arm.
    func wake() async {
        // Re-arm from scratch after every wake-up, so that a platform timer
        // that drifted from the wall clock is corrected at least every tick.
        armedDeadline = nil
        noticeClockStep()
        if pendingClockShift != nil { shiftStoredSchedules() }
        let now = clock.now()
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

    /// Steps of the wall clock bigger than this are taken for a step (a
    /// person or a VM resume setting it), not for time synchronization's
    /// slewing, which moves it by well under a millisecond per second.
    static let clockStepThreshold: Duration = .seconds(2)

    /// Notices a step of the wall clock, either way, by how far the wall clock
    /// moved from the monotonic clock since the last look. Everything the
    /// scheduler waits for is moved by the step, in memory and in the store,
    /// so that every wait keeps its length: a seller due in ten minutes is
    /// still due in ten minutes, whatever the clock now reads.
    func noticeClockStep() {
        let offset = clock.now() - Timestamp(millisecondsSince1970: 0) - monotonic.uptime()
        defer { wallOffset = offset }
        guard let previous = wallOffset else { return }
        let step = offset - previous
        guard step > Self.clockStepThreshold || step < .zero - Self.clockStepThreshold else { return }
        logger.warning(
            "the wall clock was stepped; every deadline is moved with it, so no wait changes length",
            metadata: ["step_seconds": "\(step.seconds)"])
        queue.shiftAll(by: step)
        pausedUntil = pausedUntil.map { $0 + step }
        nextProbeAt = nextProbeAt + step
        nextTickAt = nextTickAt.map { $0 + step }
        shutdownDeadline = shutdownDeadline.map { $0 + step }
        for index in sleepers.indices { sleepers[index].until = sleepers[index].until + step }
        breaker.shift(by: step)
        armedDeadline = nil
        guard phase == .running || phase == .stopping else { return }
        pendingClockShift = (pendingClockShift ?? .zero) + step
        shiftStoredSchedules()
    }

    /// Moves the stored deadlines by the pending step; until that is done no
    /// call starts, because an attempt compares the stored deadline with the
    /// wall clock. Retried at every wake-up while the store fails.
    func shiftStoredSchedules() {
        guard let step = pendingClockShift, !clockShiftInProgress else { return }
        clockShiftInProgress = true
        Task {
            var shifted = false
            do {
                try await store.shiftSchedules(by: step)
                shifted = true
            } catch {
                _ = storeFailed("move the stored deadlines after a clock step", error, sellerID: nil)
            }
            clockShiftDone(step, shifted: shifted)
        }
    }

    private func clockShiftDone(_ step: Duration, shifted: Bool) {
        clockShiftInProgress = false
        if shifted {
            storeWorked()
            let rest = (pendingClockShift ?? .zero) - step
            pendingClockShift = rest == .zero ? nil : rest
        }
        if pendingClockShift != nil, shifted { shiftStoredSchedules() }
        pump()
    }

    private func tickIfDue(_ now: Timestamp) async {
        guard phase == .running || phase == .stopping, let nextTickAt, now >= nextTickAt else { return }
        self.nextTickAt = now + configuration.tickInterval
        guard !tickInProgress else {
            // The last tick's read of the store has not come back. This
            // scheduler runs (it is here), so the heartbeat goes on: a store
            // that hangs is reported, not answered with a kill that would
            // lose the pairs held in memory.
            noteStoreHang()
            emit(.tick(snapshot()))
            return
        }
        tickInProgress = true
        if phase == .running {
            // Armed first: a read that hangs must not stop the timer, and
            // with it the heartbeat.
            arm(now)
            storeReadSince = monotonic.uptime()
            await pickUpChanges()
            storeReadSince = nil
            storeHangReported = false
            // While accounts start early, the lead shrinks as they are served.
            if lead > .zero { leadIsStale = true }
            planLead(now: now)
        }
        tickInProgress = false
        emit(.tick(snapshot()))
    }

    /// Logs once per hang that the store has not answered the tick's read
    /// for three ticks.
    private func noteStoreHang() {
        guard let waited = storeUnanswered, waited >= configuration.tickInterval * 3, !storeHangReported else { return }
        storeHangReported = true
        logger.error(
            """
            the store has not answered for \(waited.seconds) s (a disk or database that hangs); refreshing waits \
            for it, pairs in memory are kept, and the daemon goes on reporting
            """,
            metadata: ["waited_seconds": "\(waited.seconds)"])
    }

    /// How long the tick's read of the store has gone unanswered, if it has.
    var storeUnanswered: Duration? {
        storeReadSince.map { monotonic.uptime() - $0 }
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
        leadIsStale = leadIsStale || !changes.isEmpty
        for change in changes {
            // An attempt in flight reschedules its account when it ends (and
            // re-reads it under the lease first); a forced one is answered then.
            // A seller held by the breaker waits for the probe, whatever its
            // stored deadline says.
            if inFlight.contains(change.sellerID) || forced.contains(change.sellerID)
                || heldByBreaker[change.sellerID] != nil
            {
                continue
            }
            noteExpiry(change.sellerID, change.expireTime, due: change.due)
            if let due = change.due {
                queue.schedule(change.sellerID, at: due)
            } else {
                queue.remove(change.sellerID)
                if breakerProbe == change.sellerID { breakerProbeLeft(now: clock.now()) }
            }
        }
        if !changes.isEmpty {
            logger.debug("picked up changes", metadata: ["accounts": "\(changes.count)"])
        }
    }

    /// Recomputes the lead when the schedule changed unseen; only a call
    /// rate limit makes one.
    func planLead(now: Timestamp? = nil) {
        guard leadIsStale, configuration.maxCallsPerSecond != nil || lead > .zero else { return }
        // Planned at most once a tick, and at a million sellers no more than
        // every 20 s: a sort of every deadline (about 0.1 s at a million).
        let interval = max(configuration.tickInterval, .milliseconds(Int64(queue.count / 50)))
        if let now, let lastLeadPlan, now < lastLeadPlan + interval { return }
        lastLeadPlan = now
        leadIsStale = false
        lead = configuration.maxCallsPerSecond.map { queue.requiredLead(callsPerSecond: $0) } ?? .zero
        // Once an hour at most: a fleet that needs more than the rate keeps
        // crossing the line.
        let moment = now ?? clock.now()
        if lead > .seconds(1), leadReportedAt.map({ moment - $0 >= .seconds(3600) }) ?? true {
            leadReportedAt = moment
            logger.notice(
                """
                more accounts fall due together than refresh.max_calls_per_second can serve on time; \
                the earliest start early
                """,
                metadata: ["lead_seconds": "\(lead.seconds)", "accounts": "\(queue.count)"])
        }
    }

    /// Starts every due account the limits allow, overdue first, then re-arms.
    /// With a lead, accounts start that much before their deadlines.
    func pump() {
        noticeClockStep()
        let now = clock.now()
        while mayStartAttempt(now), let next = queue.peek(), next.due <= now + lead {
            if bucket?.tryTake(now) == false { break }
            _ = queue.popDue(notAfter: now + lead)
            start(next.sellerID, planned: next.due, now: now)
        }
        arm(now)
        checkIdle()
    }

    private func mayStartAttempt(_ now: Timestamp) -> Bool {
        guard phase == .idle || phase == .running else { return false }
        guard inFlight.count < configuration.concurrency, undurable.isEmpty, pendingClockShift == nil else {
            return false
        }
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

    private func start(_ sellerID: String, planned: Timestamp, now: Timestamp) {
        let isProbe = configurationFailure != nil
        if isProbe {
            probeInFlight = true
            nextProbeAt = now + configuration.configurationProbeInterval
            logger.debug("probing the gateway with one account", metadata: ["seller": "\(sellerID)"])
        }
        let isForced = forced.remove(sellerID) != nil
        let job = Job(sellerID: sellerID, forced: isForced, isProbe: isProbe, planned: isForced ? nil : planned)
        if !isForced { emit(.started(sellerID: sellerID, delay: max(.zero, now - planned))) }
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
            pendingClockShift == nil, let next = queue.peek()
        {
            var moment: Timestamp? = next.due - lead
            if let pausedUntil { moment = max(next.due - lead, pausedUntil) }
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
        if unstoredPairs == 0, let waiter = unstoredPairsWaiter {
            unstoredPairsWaiter = nil
            waiter.resume()
        }
        guard runningTasks == 0, !idleWaiters.isEmpty else { return }
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }
}
