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
        for app in Array(lanes.keys) { lanes[app]!.shift(by: step) }
        nextTickAt = nextTickAt.map { $0 + step }
        shutdownDeadline = shutdownDeadline.map { $0 + step }
        for index in sleepers.indices { sleepers[index].until = sleepers[index].until + step }
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
                _ = storeFailed("move the stored deadlines after a clock step", error, account: nil)
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
            // While accounts start early, the lead shrinks as they are served:
            // planned again once the deadlines changed (a start, a new
            // deadline, a removal), and every 10 minutes for the calls a
            // second needed, which move with the clock. Not at every tick: an
            // idle fleet with any lead (even 0.5 s at 200,000 sellers) sorted
            // every deadline every max(tick, count/50 ms), 0.3-0.37 s of CPU a
            // minute at 200,000 and at 1,000,000 sellers alike.
            if lead > .zero,
                queue.revision != leadPlanRevision
                    || lastLeadPlan.map({ now >= $0 + Self.leadReplanInterval }) ?? true
            {
                leadIsStale = true
            }
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
            _ = storeFailed("read changes", error, account: nil)
            return
        }
        guard phase == .running else { return }
        leadIsStale = leadIsStale || !changes.isEmpty
        for change in changes {
            // An attempt in flight reschedules its account when it ends (and
            // re-reads it under the lease first); a forced one is answered then.
            // A seller held by the breaker waits for the probe, whatever its
            // stored deadline says.
            let key = change.key
            if inFlight.contains(key) || forced.contains(key) || lanes[key.app]?.heldByBreaker[key] != nil {
                continue
            }
            noteExpiry(key, change.expireTime, due: change.due)
            if let due = change.due {
                queue.schedule(key, at: due)
            } else {
                queue.remove(key)
                if lanes[key.app]?.breakerProbe == key { breakerProbeLeft(key.app, now: clock.now()) }
            }
        }
        if !changes.isEmpty {
            logger.debug("picked up changes", metadata: ["accounts": "\(changes.count)"])
        }
    }

    /// How often a lead is planned again when no deadline changed.
    static let leadReplanInterval = Duration.seconds(600)

    /// Recomputes the leads when the schedule changed unseen; only a call
    /// rate limit makes one.
    func planLead(now: Timestamp? = nil) {
        let limited =
            configuration.maxCallsPerSecond != nil || configuration.maxCallsPerSecondByApp.values.contains { $0 > 0 }
        guard leadIsStale, limited || lead > .zero || !callRateShort.isEmpty else { return }
        // Planned at most once a tick, and at a million sellers no more than
        // every 20 s: a sort of every deadline (about 0.1 s at a million).
        let interval = max(configuration.tickInterval, .milliseconds(Int64(queue.count / 50)))
        if let now, let lastLeadPlan, now < lastLeadPlan + interval { return }
        lastLeadPlan = now
        leadIsStale = false
        leadPlanRevision = queue.revision
        let moment = now ?? clock.now()
        let demand = queue.callDemand(now: moment) { [configuration] app in configuration.maxCallsPerSecond(for: app) }
        leads = demand.compactMapValues { $0.lead > .zero ? $0.lead : nil }
        lead = leads.values.max() ?? .zero
        noteCallRates(demand)
        // Once an hour at most: a fleet that needs more than the rate keeps
        // crossing the line.
        if lead > .seconds(1), leadReportedAt.map({ moment - $0 >= .seconds(3600) }) ?? true {
            leadReportedAt = moment
            let app = leads.max { $0.value < $1.value }?.key ?? .default
            logger.notice(
                """
                more accounts of an app fall due together than its max_calls_per_second can serve on time; \
                the earliest start early
                """,
                metadata: ["app": "\(app)", "lead_seconds": "\(lead.seconds)", "accounts": "\(queue.count)"])
        }
    }

    /// Tells when an app's sellers need more calls a second than its rate
    /// allows, and when they no longer do. Meanwhile their refreshes are
    /// planned at the latest the policy allows (``plannedRefresh(after:app:)``),
    /// which asks fewer calls a second (``RefreshPolicy/latestRefreshRelief``)
    /// than the policy's own times: it is over only once the need, at the
    /// policy's times, would be below nine tenths of the rate, so that the
    /// plan does not swing between the two.
    private func noteCallRates(_ demand: [AppName: DeadlineQueue.CallDemand]) {
        for app in Array(callRateShort.keys) where demand[app] == nil {
            recoverCallRate(app)
        }
        for (app, demand) in demand {
            guard let allowed = configuration.maxCallsPerSecond(for: app) else { continue }
            // A crowd the lead starts early needs the whole rate until its
            // deadline, exactly: only a need beyond that is a shortage.
            if demand.needed > allowed * 1.02, callRateShort[app] == nil {
                callRateShort[app] = demand.needed
                logger.warning(
                    """
                    the sellers need more calls a second than max_calls_per_second allows to be refreshed at \
                    the policy's times: the earliest start early, and each refresh is planned later in its \
                    token's life (a tenth of it left) so that the calls fit; raise max_calls_per_second if the \
                    gateway's quota allows
                    """,
                    metadata: [
                        "app": "\(app)", "needed_calls_per_second": "\((demand.needed * 10).rounded(.up) / 10)",
                        "max_calls_per_second": "\(allowed)",
                    ])
                emit(.degraded(.callRate(app: app, needed: demand.needed, allowed: allowed)))
            } else if callRateShort[app] != nil {
                if demand.needed * configuration.policy.latestRefreshRelief <= allowed * 0.9 {
                    recoverCallRate(app)
                } else {
                    callRateShort[app] = max(callRateShort[app]!, demand.needed)
                }
            }
        }
    }

    private func recoverCallRate(_ app: AppName) {
        guard let needed = callRateShort.removeValue(forKey: app) else { return }
        let allowed = configuration.maxCallsPerSecond(for: app) ?? 0
        logger.notice(
            "the sellers' calls fit max_calls_per_second again", metadata: ["app": "\(app)"])
        emit(.recovered(.callRate(app: app, needed: needed, allowed: allowed)))
    }

    /// How long before its deadline an account of `app` may start.
    func lead(of app: AppName) -> Duration {
        leads[app] ?? .zero
    }

    /// Starts every due account the limits allow, overdue first, then re-arms.
    /// With a lead, accounts start that much before their deadlines.
    func pump() {
        noticeClockStep()
        let now = clock.now()
        while mayStartAttempt(now), let next = takeNextStartable(now) {
            start(next.key, planned: next.due, now: now)
        }
        arm(now)
        checkIdle()
    }

    /// What holds every app back: the phase, the attempts under way, a rotated
    /// pair the store has not taken, a clock step not yet applied to the store.
    private func mayStartAttempt(_ now: Timestamp) -> Bool {
        guard phase == .idle || phase == .running else { return false }
        return inFlight.count < attemptsAllowed && undurable.isEmpty && pendingClockShift == nil
    }

    /// Takes off the queue the earliest due account whose app may call now,
    /// whether it is the heap's top or first in an app's line of set-aside
    /// accounts, and spends a call of that app's budget.
    ///
    /// An account at the top of the heap whose app may not call yet (its
    /// own pause, configuration trouble, call budget, lead, or no gateway) is
    /// set aside on the way (``DeadlineQueue/setAsideEarliest()``), keeping
    /// its deadline: the one heap moves on to the other apps' accounts
    /// without losing it, and it starts, in deadline order with its app's
    /// others, once its app may call.
    private func takeNextStartable(_ now: Timestamp) -> (key: AccountKey, due: Timestamp)? {
        while true {
            var best: (key: AccountKey, due: Timestamp)?
            for app in queue.appsWithSetAside where laneMayCall(app, now) {
                guard let first = queue.firstSetAside(of: app), first.due <= now + lead(of: app) else { continue }
                if best.map({ first.due < $0.due }) ?? true { best = first }
            }
            if let top = queue.peek(), top.due <= now + lead, best.map({ top.due < $0.due }) ?? true {
                guard top.due <= now + lead(of: top.key.app), laneMayCall(top.key.app, now) else {
                    queue.setAsideEarliest()
                    continue
                }
                _ = queue.popDue(notAfter: top.due)
                lanes[top.key.app]!.takeCall(now)
                return top
            }
            guard let best else { return nil }
            _ = queue.popSetAside(of: best.key.app)
            lanes[best.key.app]!.takeCall(now)
            return best
        }
    }

    /// Whether `app` may start a call now by its own lane (which this makes
    /// when the app is new); notes the end of its throttling pause.
    private func laneMayCall(_ app: AppName, _ now: Timestamp) -> Bool {
        guard gateways[app] != nil else {
            noteMissingGateway(app)
            return false
        }
        if lanes[app, default: newLane(for: app)].endPause(at: now) {
            logger.notice("throttling pause over; this app's calls resume", metadata: ["app": "\(app)"])
        }
        guard let moment = lanes[app]!.nextCallAt(now) else { return false }
        return moment <= now
    }

    private func start(_ key: AccountKey, planned: Timestamp, now: Timestamp) {
        let isProbe = lanes[key.app]?.configurationFailure != nil
        if isProbe {
            lanes[key.app]!.probeInFlight = true
            lanes[key.app]!.nextProbeAt = now + configuration.configurationProbeInterval
            logger.debug("probing the gateway with one account of the app", metadata: key.metadata())
        }
        let isForced = forced.remove(key) != nil
        let job = Job(account: key, forced: isForced, isProbe: isProbe, planned: isForced ? nil : planned)
        if !isForced { emit(.started(account: key, delay: max(.zero, now - planned))) }
        inFlight.insert(key)
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
        if mayStartAttempt(now) {
            // The heap's top is looked at when it comes within the longest
            // lead: started then, or set aside for its app.
            if let next = queue.peek() { consider(next.due - lead) }
            for app in queue.appsWithSetAside where gateways[app] != nil {
                guard let first = queue.firstSetAside(of: app),
                    let moment = lanes[app, default: newLane(for: app)].nextCallAt(now)
                else { continue }
                consider(max(moment, first.due - lead(of: app)))
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
