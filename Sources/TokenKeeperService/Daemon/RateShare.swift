import RefreshScheduler
import Synchronization
import TokenKeeperCore

/// This node's part of each app's call rate: an app's rate
/// (`apps.<name>.max_calls_per_second`, else `refresh.max_calls_per_second`)
/// is the vendor's limit for its app key, shared by every live node; of a
/// node's part, `reservedForCallback` goes to the callback's code exchanges
/// for that app (``callbackRate(for:)``), the rest to refreshes.
final class RateShare: Sendable {
    private struct State {
        var liveNodes = 1
        var base: RefreshSchedulerConfiguration
    }
    private let state: Mutex<State>
    private let reserved: Double

    init(base: RefreshSchedulerConfiguration, reservedForCallback: Double = 0) {
        state = Mutex(State(base: base))
        reserved = min(max(reservedForCallback, 0), 0.5)
    }

    /// This node's settings now.
    var current: RefreshSchedulerConfiguration {
        state.withLock { share(of: $0.base, liveNodes: $0.liveNodes) }
    }

    /// The live nodes sharing the rate, this one included.
    var liveNodes: Int { state.withLock { $0.liveNodes } }

    /// `app`'s calls a second on this node now (refreshes and proxied calls
    /// together), nil when unlimited: ``current``'s, without copying it.
    func callsPerSecond(for app: AppName) -> Double? {
        state.withLock { state in
            state.base.maxCallsPerSecond(for: app).map { $0 / Double(max(1, state.liveNodes)) * (1 - reserved) }
        }
    }

    /// The callback's code exchanges a second for `app` on this node now;
    /// nil when the app's rate is unlimited.
    func callbackRate(for app: AppName) -> Double? {
        state.withLock { state in
            state.base.maxCallsPerSecond(for: app).map { $0 / Double(max(1, state.liveNodes)) * reserved }
        }
    }

    /// Keeps `base` (reloaded settings) and returns this node's share of it.
    func adjusted(base: RefreshSchedulerConfiguration) -> RefreshSchedulerConfiguration {
        state.withLock { state in
            state.base = base
            return share(of: base, liveNodes: state.liveNodes)
        }
    }

    /// This node's settings with `count` live nodes; nil when that is no change.
    func set(liveNodes count: Int) -> RefreshSchedulerConfiguration? {
        state.withLock { state in
            guard state.liveNodes != max(1, count) else { return nil }
            state.liveNodes = max(1, count)
            return share(of: state.base, liveNodes: state.liveNodes)
        }
    }

    private func share(of settings: RefreshSchedulerConfiguration, liveNodes: Int) -> RefreshSchedulerConfiguration {
        var settings = settings
        let part = 1 / Double(max(1, liveNodes)) * (1 - reserved)
        settings.maxCallsPerSecond = settings.maxCallsPerSecond.map { $0 * part }
        // 0 (no limit) stays 0.
        settings.maxCallsPerSecondByApp = settings.maxCallsPerSecondByApp.mapValues { $0 * part }
        return settings
    }
}
