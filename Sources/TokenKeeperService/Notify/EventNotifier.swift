import Logging
import RefreshScheduler
import ServiceLifecycle
import Synchronization
import TokenKeeperCore

/// The outbox's courier, a `Service` of its own beside the scheduler: it
/// raises `reauth_due` as accounts enter the warning window, records
/// `degraded`/`recovered`, and delivers every outbox event to each channel
/// (the hook, the webhook), at least once, retrying with exponential backoff
/// for `notify.retry_hours`.
///
/// Delivery state lives in keeper.db (`deliveries`), so a restart neither
/// loses an event nor sends again one that was delivered. Each channel has
/// its own loop and its own HTTP client: a slow or dead receiver delays only
/// its own channel, never a refresh (the store calls it makes are short).
final class EventNotifier: Service, Sendable {
    struct Settings: Sendable {
        /// Deliveries of an event are given up this long after it.
        var retryWindow: Duration = .seconds(86_400)
        var retryInitial: Duration = .seconds(10)
        var retryMax: Duration = .seconds(900)
        /// `notify.reauth_warning_days`.
        var reauthWarning: Duration = .seconds(7 * 86_400)
        /// How often the warning window is checked.
        var reauthCheckInterval: Duration = .seconds(60)
        /// How often the outbox is looked at for events written by other
        /// processes (`add --code`); the daemon's own ring the doorbell.
        var pollInterval: Duration = .seconds(2)
        /// How long a stop waits for attempts in flight to end and be
        /// recorded (a receiver that took the event would get it again after
        /// the restart otherwise); no new attempt starts meanwhile.
        var stopDrain: Duration = .seconds(5)
    }

    private let store: any EventOutbox
    private let channels: [any NotificationChannel]
    private let links: AuthorizationLinks?
    private let settings: Settings
    private let clock: any WallClock
    private let metrics: DaemonMetrics?
    private let logger: Logger
    private let doorbells: [String: Doorbell]
    private let records:
        (
            stream: AsyncStream<(EventKind, AppName?, String)>,
            continuation: AsyncStream<(EventKind, AppName?, String)>.Continuation
        )
    /// Set by a graceful stop: delivery loops end after the attempt in flight.
    private let stopping = Atomic(false)
    private let stopRequested = Doorbell()
    /// Attempts between their start and their record.
    private let attemptsInFlight = Atomic(0)

    init(
        store: any EventOutbox, channels: [any NotificationChannel], links: AuthorizationLinks?, settings: Settings,
        clock: any WallClock, metrics: DaemonMetrics?, logger: Logger
    ) {
        self.store = store
        self.channels = channels
        self.links = links
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.doorbells = Dictionary(uniqueKeysWithValues: channels.map { ($0.name, Doorbell()) })
        self.records = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1000))
    }

    /// Tells every channel that a new event may be in the outbox.
    func nudge() {
        for doorbell in doorbells.values { doorbell.ring() }
    }

    /// Hands a scheduler event over: degraded and recovered become events
    /// (written in order, retried while the store cannot write, as when a
    /// full disk is what degraded); a re-authorization is already one.
    func observe(_ event: SchedulerEvent) {
        switch event {
        case .degraded(let reason):
            records.continuation.yield((.degraded, reason.app, Self.describe(reason)))
        case .recovered(let reason):
            records.continuation.yield((.recovered, reason.app, Self.describe(reason)))
        case .reauthRequired:
            nudge()
        case .ready, .started, .refreshed, .failed, .tick, .stopped, .rotationUnstored:
            break
        }
    }

    /// `reason: what is wrong`; `reason/app: …` for one app's trouble (what
    /// `status` pairs a recovery with its degradation by).
    static func describe(_ reason: DegradedReason) -> String {
        "\(DaemonHealth.key(of: reason)): " + DaemonStatus.describe(reason)
    }

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await cancelWhenGracefulShutdown {
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask { await self.recordEvents() }
                        group.addTask { await self.watchReauthorizationWindow() }
                    }
                }
            }
            group.addTask {
                await withGracefulShutdownHandler {
                    await self.deliverUntilStopped()
                } onGracefulShutdown: {
                    self.stopping.store(true, ordering: .sequentiallyConsistent)
                    self.stopRequested.ring()
                    self.nudge()
                }
            }
        }
        records.continuation.finish()
        for channel in channels { await channel.shutdown() }
    }

    /// Each channel's loop; a graceful stop lets the attempts in flight end
    /// and be recorded, for at most ``Settings/stopDrain``, then cancels them.
    private func deliverUntilStopped() async {
        await withTaskGroup(of: Bool.self) { group in
            for channel in channels {
                group.addTask {
                    await self.deliver(on: channel)
                    return false
                }
            }
            group.addTask {
                while !self.isStopping, !Task.isCancelled { await self.stopRequested.wait(upTo: .seconds(3600)) }
                // Loops in a backoff or a wait end here too: only attempts
                // in flight are waited for.
                let deadline = ContinuousClock.now + self.settings.stopDrain
                while self.attemptsInFlight.load(ordering: .sequentiallyConsistent) > 0, ContinuousClock.now < deadline
                {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                return true
            }
            var loops = channels.count
            while loops > 0, let drainIsOver = await group.next() {
                if drainIsOver { break }
                loops -= 1
            }
            group.cancelAll()
        }
    }

    private var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    // MARK: - Events the daemon raises

    private func recordEvents() async {
        for await (kind, app, detail) in records.stream {
            var delay: Duration = .seconds(1)
            while !Task.isCancelled {
                do {
                    try await store.appendEvent(
                        kind, app: app, sellerID: nil, detail: detail, requestID: nil, at: clock.now())
                    nudge()
                    break
                } catch {
                    logger.warning(
                        "a \(kind) event could not be stored yet; trying again",
                        metadata: ["error": "\(error)", "retry_in": "\(delay)"])
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(30))
                }
            }
            if Task.isCancelled { return }
        }
    }

    private func watchReauthorizationWindow() async {
        let idle = Doorbell()
        while !Task.isCancelled {
            let now = clock.now()
            do {
                // In batches: a fleet authorized on one day enters the window together.
                while true {
                    let warned = try await store.raiseReauthDue(
                        horizon: now + settings.reauthWarning, now: now, limit: 1000)
                    if warned.isEmpty { break }
                    logger.notice(
                        "sellers must authorize again soon",
                        metadata: [
                            "sellers": "\(warned.prefix(20).map(\.description).joined(separator: ","))",
                            "count": "\(warned.count)",
                        ])
                    nudge()
                }
            } catch {
                logger.warning("the re-authorization window could not be checked", metadata: ["error": "\(error)"])
            }
            await idle.wait(upTo: settings.reauthCheckInterval)
        }
    }

    // MARK: - Delivering

    private func deliver(on channel: any NotificationChannel) async {
        let doorbell = doorbells[channel.name] ?? Doorbell()
        var seenOutbox: Int64 = -1
        var random = SystemRandomNumberGenerator()
        // Failures in a row on this channel. While the receiver fails, the
        // channel itself backs off: a backlog is not run through at full
        // speed against a dead receiver (each attempt is a write to keeper.db).
        var failuresInARow = 0
        while !Task.isCancelled, !isStopping {
            var wait = settings.pollInterval
            var backingOff = false
            do {
                let now = clock.now()
                let latest = try await store.latestOutboxEventID()
                if latest != seenOutbox {
                    try await store.enqueueDeliveries(
                        channel: channel.name, oldest: now - settings.retryWindow, now: now)
                    seenOutbox = latest
                }
                let due = try await store.dueDeliveries(channel: channel.name, now: now, limit: 20)
                for delivery in due {
                    // Counted before the stop is looked at: a stop that
                    // sees none in flight sees this loop stopping.
                    attemptsInFlight.add(1, ordering: .sequentiallyConsistent)
                    defer { attemptsInFlight.subtract(1, ordering: .sequentiallyConsistent) }
                    if Task.isCancelled || isStopping { return }
                    if try await attempt(delivery, on: channel, random: &random) {
                        failuresInARow = 0
                    } else {
                        failuresInARow += 1
                        wait = EventNotifierBackoff.delay(
                            afterAttempts: failuresInARow, settings: settings, random: &random)
                        backingOff = true
                        break
                    }
                }
                if backingOff {
                    // Waits the channel's backoff (a ring does not cut it short).
                    try? await Task.sleep(for: wait)
                    continue
                }
                if due.count == 20 { continue }
                if let next = try await store.nextDeliveryAttempt(channel: channel.name) {
                    wait = min(wait, max(next - clock.now(), .milliseconds(10)))
                }
            } catch {
                logger.warning(
                    "notifications wait: the store cannot be read or written",
                    metadata: ["channel": "\(channel.name)", "error": "\(error)"])
                wait = .seconds(5)
            }
            await doorbell.wait(upTo: wait)
        }
    }

    /// One attempt, recorded; true when delivered.
    private func attempt(
        _ delivery: PendingDelivery, on channel: any NotificationChannel, random: inout SystemRandomNumberGenerator
    ) async throws -> Bool {
        let event = delivery.event
        var payload = delivery.payload
        if payload == nil {
            let url = event.account.flatMap { links?.url(for: $0, now: clock.now()) }
            payload = try await store.storePayload(
                eventID: event.id,
                payload: EventPayload.render(event, uid: delivery.uid, reauthBy: delivery.reauthBy, authorizeURL: url))
        }
        let failure = await channel.deliver(payload: payload ?? "{}", delivery: delivery)
        // A stop that cut the attempt short leaves it pending: it is sent again after the restart.
        if failure != nil, Task.isCancelled { return false }
        metrics?.deliveryAttempt(channel: channel.name, succeeded: failure == nil)
        var logger = self.logger
        logger[metadataKey: "channel"] = "\(channel.name)"
        logger[metadataKey: "event_id"] = "\(event.id)"
        logger[metadataKey: "event_uid"] = "\(delivery.uid)"
        logger[metadataKey: "event"] = "\(event.kind)"
        if let seller = event.sellerID { logger[metadataKey: "seller_id"] = "\(seller)" }
        let now = clock.now()
        let result: DeliveryResult
        if let failure {
            logger[metadataKey: "error"] = "\(failure)"
            if now - delivery.retryWindowStart >= settings.retryWindow {
                result = .abandoned(error: failure)
                logger.error("notification given up after notify.retry_hours of failures")
            } else {
                let delay = EventNotifierBackoff.delay(
                    afterAttempts: delivery.attempts + 1, settings: settings, random: &random)
                result = .failed(error: failure, retryAt: now + delay)
                logger.warning("notification failed; it will be retried", metadata: ["retry_in": "\(delay)"])
            }
        } else {
            result = .delivered
            logger.info("notification delivered")
        }
        try await store.recordDelivery(eventID: event.id, channel: channel.name, result: result, now: now)
        return failure == nil
    }
}

/// Capped exponential backoff with jitter: after the n-th failure, between
/// half and all of `retryInitial · 2^(n-1)`, at most `retryMax`.
enum EventNotifierBackoff {
    static func delay(
        afterAttempts attempts: Int, settings: EventNotifier.Settings, random: inout some RandomNumberGenerator
    ) -> Duration {
        let exponent = min(max(attempts - 1, 0), 30)
        let ceiling = min(settings.retryInitial * (1 << exponent), settings.retryMax)
        let milliseconds = max(ceiling.wholeMilliseconds, 2)
        return .milliseconds(Int64.random(in: (milliseconds / 2)...milliseconds, using: &random))
    }
}
