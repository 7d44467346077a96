import Logging
import ServiceLifecycle
import Synchronization
import TokenKeeperCore

/// The fleet's figures at one moment, as the store gave them.
struct FleetSample: Sendable {
    var figures: FleetFigures
    /// Counts by app and status.
    var byApp: [AppName: [AccountStatus: Int]] = [:]
    var deliveries: [String: DeliveryCounts]
    /// When they were read.
    var at: Timestamp
}

/// Reads the fleet's figures (counts by status, the next deadline, the
/// notifications' counts: aggregate queries over every seller) away from
/// any scrape: once when the schedule is loaded, then again only when a
/// scrape finds the sample older than `interval`, and never more often.
/// A scrape is served at once from memory: whoever can reach `/metrics`
/// cannot make the store run a query, however often it asks.
final class FleetSampler: Service, Sendable {
    private let read: @Sendable (Timestamp) async throws -> FleetSample
    private let clock: any WallClock
    private let interval: Duration
    private let waitUntilReady: @Sendable () async -> Void
    private let logger: Logger
    private let latest = Mutex<FleetSample?>(nil)
    /// When a scrape last found the sample stale, and when the last sample
    /// was stored: an ask from before a sample was stored is answered by it.
    private let asks = Mutex<(askedAt: ContinuousClock.Instant?, storedAt: ContinuousClock.Instant?)>((nil, nil))
    private let wanted = Doorbell()

    init(
        interval: Duration, clock: any WallClock, logger: Logger, waitUntilReady: @escaping @Sendable () async -> Void,
        read: @escaping @Sendable (Timestamp) async throws -> FleetSample
    ) {
        self.interval = interval
        self.clock = clock
        self.logger = logger
        self.waitUntilReady = waitUntilReady
        self.read = read
    }

    /// The last sample (nil before the first, which is read at READY); asks
    /// for a new one in the background when it is older than the interval.
    func current() -> FleetSample? {
        let sample = latest.withLock { $0 }
        if let sample, clock.now() - sample.at >= interval {
            asks.withLock { $0.askedAt = .now }
            wanted.ring()
        }
        return sample
    }

    private var askedSinceStored: Bool {
        asks.withLock { asks in
            guard let asked = asks.askedAt else { return false }
            return asks.storedAt.map { asked > $0 } ?? true
        }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.waitUntilReady()
            while !Task.isCancelled {
                do {
                    let sample = try await self.read(self.clock.now())
                    self.latest.withLock { $0 = sample }
                    self.asks.withLock { $0.storedAt = .now }
                } catch {
                    self.logger.warning(
                        "the fleet's figures for /metrics could not be read; the last ones are served",
                        metadata: ["error": "\(error)"])
                }
                // Never more often than the interval, and only when asked.
                try? await Task.sleep(for: self.interval)
                while !Task.isCancelled, !self.askedSinceStored {
                    await self.wanted.wait(upTo: .seconds(86_400))
                }
            }
        }
    }
}
