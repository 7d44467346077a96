import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The daemon's `metrics.listen` address on loopback, and what the benchmark reads there.
struct MetricsEndpoint {
    let port: Int

    /// A port nobody listens on now: bound to port 0 and released, for the daemon to take.
    static func free() async throws -> MetricsEndpoint {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port
        try await channel.close()
        guard let port else { throw POSIXError(.EADDRNOTAVAIL) }
        return MetricsEndpoint(port: port)
    }

    /// The start-delay histogram; nil when the daemon does not expose it (or cannot be reached).
    func startDelays() async -> StartDelayHistogram? {
        guard let text = await exposition() else { return nil }
        return StartDelayHistogram(exposition: text)
    }

    private func exposition() async -> String? {
        do {
            let response = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics"), timeout: .seconds(10))
            guard response.status == .ok else { return nil }
            return String(buffer: try await response.body.collect(upTo: 64 << 20))
        } catch {
            return nil
        }
    }
}

/// `tokenkeeper_refresh_start_delay_seconds`: how long after its planned
/// time each refresh started (0 when it started early), from the Prometheus
/// exposition. Series with other labels are added together.
struct StartDelayHistogram {
    static let name = "tokenkeeper_refresh_start_delay_seconds"

    /// Cumulative counts by upper bound, ascending; the last bound is +Inf.
    let buckets: [(bound: Double, count: Double)]
    /// Refreshes started.
    let count: Double

    init(buckets: [(bound: Double, count: Double)], count: Double) {
        self.buckets = buckets
        self.count = count
    }

    init?(exposition: String) {
        var buckets: [Double: Double] = [:]
        var count: Double?
        for line in exposition.split(separator: "\n") where line.hasPrefix(Self.name) {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let value = Double(parts[1]) else { continue }
            let series = parts[0].dropFirst(Self.name.count)
            if series.hasPrefix("_count") {
                count = (count ?? 0) + value
            } else if series.hasPrefix("_bucket"), let bound = Self.bound(in: series) {
                buckets[bound, default: 0] += value
            }
        }
        guard let count, !buckets.isEmpty else { return nil }
        self.init(buckets: buckets.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, count: count)
    }

    /// The starts recorded since `earlier` was scraped (same buckets).
    func since(_ earlier: StartDelayHistogram) -> StartDelayHistogram {
        let buckets = zip(buckets, earlier.buckets).map { ($0.bound, $0.count - $1.count) }
        return StartDelayHistogram(buckets: buckets, count: count - earlier.count)
    }

    /// The `le` label of a bucket series, `+Inf` included.
    private static func bound(in series: Substring) -> Double? {
        guard let start = series.range(of: "le=\"")?.upperBound,
            let end = series[start...].firstIndex(of: "\"")
        else { return nil }
        let text = series[start..<end]
        return text == "+Inf" ? .infinity : Double(text)
    }

    /// Starts no later than `bound` seconds after their planned time (the
    /// bucket whose bound is nearest to it from below).
    func started(within bound: Double) -> Double {
        buckets.last { $0.bound <= bound + 1e-9 }?.count ?? 0
    }

    /// The upper bound of the bucket the `quantile` (0 to 1) of starts falls in.
    func bound(ofQuantile quantile: Double) -> Double? {
        guard count > 0 else { return nil }
        return buckets.first { $0.count >= quantile * count }?.bound
    }

}
