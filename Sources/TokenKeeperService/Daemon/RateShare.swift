import RefreshScheduler
import Synchronization

/// This node's part of the app's call rate: `refresh.max_calls_per_second`
/// is the vendor's limit for the app key, shared by every live node.
final class RateShare: Sendable {
    private struct State {
        var liveNodes = 1
        var base: RefreshSchedulerConfiguration
    }
    private let state: Mutex<State>

    init(base: RefreshSchedulerConfiguration) {
        state = Mutex(State(base: base))
    }

    /// This node's settings now.
    var current: RefreshSchedulerConfiguration {
        state.withLock { Self.share(of: $0.base, liveNodes: $0.liveNodes) }
    }

    /// Keeps `base` (reloaded settings) and returns this node's share of it.
    func adjusted(base: RefreshSchedulerConfiguration) -> RefreshSchedulerConfiguration {
        state.withLock { state in
            state.base = base
            return Self.share(of: base, liveNodes: state.liveNodes)
        }
    }

    /// This node's settings with `count` live nodes; nil when that is no change.
    func set(liveNodes count: Int) -> RefreshSchedulerConfiguration? {
        state.withLock { state in
            guard state.liveNodes != max(1, count) else { return nil }
            state.liveNodes = max(1, count)
            return Self.share(of: state.base, liveNodes: state.liveNodes)
        }
    }

    static func share(of settings: RefreshSchedulerConfiguration, liveNodes: Int) -> RefreshSchedulerConfiguration {
        var settings = settings
        settings.maxCallsPerSecond = settings.maxCallsPerSecond.map { $0 / Double(max(1, liveNodes)) }
        return settings
    }
}
