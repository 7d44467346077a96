import Logging
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import TokenKeeperService

@Suite("The fleet's figures for /metrics are read away from scrapes")
struct FleetSamplerTests {
    @Test("scrapes are served from memory; a stale sample is read again once, in the background, and only when asked")
    func scrapesNeverReadTheStore() async throws {
        let reads = Atomic(0)
        let sampler = FleetSampler(
            interval: .milliseconds(300), clock: SystemWallClock(), logger: Logger(label: "test"),
            waitUntilReady: {},
            read: { now in
                reads.add(1, ordering: .relaxed)
                return FleetSample(figures: FleetFigures(byStatus: [.active: 3]), deliveries: [:], at: now)
            })
        let running = Task { try await sampler.run() }
        defer { running.cancel() }
        try await waitUntil("the first sample, at READY") { sampler.current() != nil }
        for _ in 0..<1000 { #expect(sampler.current()?.figures.byStatus[.active] == 3) }
        #expect(reads.load(ordering: .relaxed) == 1, "a thousand scrapes, one read")
        // Once older than the interval, a scrape asks for a new one, served later.
        try await Task.sleep(for: .milliseconds(400))
        let stale = try #require(sampler.current())
        try await waitUntil("a new sample") { (sampler.current()?.at ?? stale.at) > stale.at }
        for _ in 0..<1000 { _ = sampler.current() }
        #expect(reads.load(ordering: .relaxed) == 2)
        // Nobody asks: nothing is read, however long.
        try await Task.sleep(for: .milliseconds(900))
        #expect(reads.load(ordering: .relaxed) == 2, "no scrape, no read")
    }
}
