import Foundation
import Logging
import RefreshScheduler
import SQLiteStore
import ServiceLifecycle
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import TokenKeeperService

/// The notifier against a real store, a manual wall clock and a scripted channel.
@Suite struct EventNotifierTests {
    /// A channel that fails while `failing` and records every attempt.
    final class ScriptedChannel: NotificationChannel {
        let name = "webhook"
        let failing = Mutex(true)
        let attempts = Mutex<[(uid: String, payload: String)]>([])

        func deliver(payload: String, delivery: PendingDelivery) async -> String? {
            attempts.withLock { $0.append((delivery.uid, payload)) }
            return failing.withLock { $0 } ? "HTTP 503" : nil
        }

        func shutdown() async {}
        var count: Int { attempts.withLock { $0.count } }
    }

    let scratch = try! ScratchDirectory()
    let clock = ManualWallClock()

    func notifier(_ store: SQLiteAccountStore, _ channel: ScriptedChannel) -> EventNotifier {
        var settings = EventNotifier.Settings()
        settings.retryWindow = .seconds(3600)
        settings.retryInitial = .milliseconds(20)
        settings.retryMax = .milliseconds(40)
        settings.pollInterval = .milliseconds(20)
        settings.reauthWarning = .zero
        return EventNotifier(
            store: store, channels: [channel], links: nil, settings: settings, clock: clock, metrics: nil,
            logger: Logger(label: "test"))
    }

    /// Runs the notifier until `condition` holds (or `timeout` passes), then stops it.
    func run(
        _ notifier: EventNotifier, timeout: Duration = .seconds(20),
        until condition: @escaping @Sendable () async -> Bool
    ) async throws -> Bool {
        let task = Task { try await notifier.run() }
        let deadline = ContinuousClock.now + timeout
        var met = await condition()
        while !met, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            met = await condition()
        }
        task.cancel()
        _ = try? await task.value
        return met
    }

    @Test func degradedAndRecoveredAreRecordedAndDeliveredInOrderWithTheSameBytesOnEveryRetry() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        let channel = ScriptedChannel()
        let courier = notifier(store, channel)
        courier.observe(.degraded(.storage(message: "disk full")))
        courier.observe(.recovered(.storage(message: "disk full")))
        // Retries are due by the wall clock: it moves 50 ms a look.
        let retried = try await run(courier) {
            clock.advance(by: .milliseconds(50))
            return channel.count >= 3
        }
        #expect(retried)
        channel.failing.withLock { $0 = false }
        let delivered = try await run(notifier(store, channel)) {
            clock.advance(by: .milliseconds(50))
            return (try? await store.deliveryCounts()["webhook"]?.delivered) == 2
        }
        #expect(delivered)
        let attempts = channel.attempts.withLock { $0 }
        let first = try #require(attempts.first)
        #expect(attempts.filter { $0.uid == first.uid }.allSatisfy { $0.payload == first.payload }, "rendered once")
        let kinds = try await store.events(EventQuery()).reversed().map(\.kind)
        #expect(kinds == [.degraded, .recovered])
        #expect(first.payload.contains("\"kind\":\"degraded\"") && first.payload.contains("storage: "))
        // Delivered is delivered: a restarted notifier sends nothing again.
        let before = channel.count
        _ = try await run(notifier(store, channel), timeout: .milliseconds(500)) { false }
        #expect(channel.count == before)
        try await store.close()
    }

    @Test func aDeliveryFailingPastTheRetryWindowIsGivenUpAndCounted() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        try await store.appendEvent(.reauthRequired, sellerID: "1001", detail: "IllegalRefreshToken", at: clock.now())
        let channel = ScriptedChannel()
        let failedOnce = try await run(notifier(store, channel)) { channel.count >= 1 }
        #expect(failedOnce)
        #expect(try await store.deliveryCounts()["webhook"] == DeliveryCounts(pending: 1))
        clock.advance(by: .seconds(3601))
        let givenUp = try await run(notifier(store, channel)) {
            (try? await store.deliveryCounts()["webhook"]?.abandoned) == 1
        }
        #expect(givenUp)
        let attempts = channel.count
        _ = try await run(notifier(store, channel), timeout: .milliseconds(500)) { false }
        #expect(channel.count == attempts, "a given-up delivery is not tried again")
        try await store.close()
    }

    /// A channel whose attempt waits until released, as a webhook waits for
    /// its receiver's answer; cancelled, it fails as an HTTP client does.
    final class HeldChannel: NotificationChannel {
        let name = "webhook"
        let started = Mutex(0)
        let released = Mutex(false)

        func deliver(payload: String, delivery: PendingDelivery) async -> String? {
            started.withLock { $0 += 1 }
            while !released.withLock({ $0 }) {
                if Task.isCancelled { return "cancelled" }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return nil
        }

        func shutdown() async {}
    }

    @Test func aStopLetsTheAttemptInFlightEndAndRecordsIt() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        try await store.appendEvent(.reauthRequired, sellerID: "1001", detail: "IllegalRefreshToken", at: clock.now())
        let channel = HeldChannel()
        let group = ServiceGroup(services: [notifierWithHeld(store, channel)], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        try await waitUntil("an attempt in flight") { channel.started.withLock { $0 } == 1 }
        await group.triggerGracefulShutdown()
        // The receiver answers while the daemon stops.
        try await Task.sleep(for: .milliseconds(100))
        channel.released.withLock { $0 = true }
        try await running.value
        #expect(
            try await store.deliveryCounts()["webhook"] == DeliveryCounts(delivered: 1),
            "delivered and recorded: a restart does not send it again")
        try await store.close()
    }

    @Test func aStopWaitsForAnAttemptInFlightAtMostTheDrainTime() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        try await store.appendEvent(.reauthRequired, sellerID: "1001", detail: "IllegalRefreshToken", at: clock.now())
        let channel = HeldChannel()
        let group = ServiceGroup(
            services: [notifierWithHeld(store, channel, drain: .milliseconds(300))], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        try await waitUntil("an attempt in flight") { channel.started.withLock { $0 } == 1 }
        let stoppedAt = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        let took = ContinuousClock.now - stoppedAt
        #expect(took >= .milliseconds(300) && took < .seconds(10), "\(took)")
        #expect(
            try await store.deliveryCounts()["webhook"] == DeliveryCounts(pending: 1), "sent again after the restart")
        try await store.close()
    }

    func notifierWithHeld(_ store: SQLiteAccountStore, _ channel: HeldChannel, drain: Duration = .seconds(30))
        -> EventNotifier
    {
        var settings = EventNotifier.Settings()
        settings.pollInterval = .milliseconds(20)
        settings.reauthWarning = .zero
        settings.stopDrain = drain
        return EventNotifier(
            store: store, channels: [channel], links: nil, settings: settings, clock: clock, metrics: nil,
            logger: Logger(label: "test"))
    }
}
