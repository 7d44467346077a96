import RefreshScheduler
import Synchronization

/// This node's part of the app's call rate: `refresh.max_calls_per_second`
/// is the vendor's limit for the app key, shared by every live node; of a
/// node's part, `reservedForCallback` goes to the callback's code exchanges
/// (``callbackRate``), the rest to refreshes.
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

    /// The callback's code exchanges a second on this node now; nil when
    /// the app's rate is unlimited.
    var callbackRate: Double? {
        state.withLock { state in
            state.base.maxCallsPerSecond.map { $0 / Double(max(1, state.liveNodes)) * reserved }
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
        settings.maxCallsPerSecond = settings.maxCallsPerSecond.map { $0 / Double(max(1, liveNodes)) * (1 - reserved) }
        return settings
    }
}
