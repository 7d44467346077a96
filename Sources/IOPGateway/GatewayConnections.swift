import AsyncHTTPClient
import Logging
import NIOCore
import Synchronization

/// The HTTP clients behind an ``IOPGatewayClient``: one in use, sized to the
/// configuration's ``GatewayConfiguration/maxConnections``, and the clients
/// it replaced, each closed once its last call ends.
///
/// AsyncHTTPClient fixes a client's pool size when the client is made, so a
/// new size (SIGHUP with a new `refresh.concurrency`) means a new client;
/// closing the old one at once would cut the calls it still carries.
final class GatewayConnections: Sendable {
    /// One HTTP client and the calls it carries.
    private final class Pool: Sendable {
        let client: HTTPClient
        let maxConnections: Int
        let connectTimeout: Duration

        init(maxConnections: Int, connectTimeout: Duration, logger: Logger) {
            self.maxConnections = maxConnections
            self.connectTimeout = connectTimeout
            var configuration = HTTPClient.Configuration(
                // A redirect would re-send a token somewhere else; it is reported, not followed.
                redirectConfiguration: .disallow,
                timeout: HTTPClient.Configuration.Timeout(connect: TimeAmount(connectTimeout)))
            // A refused connection fails the call at once instead of being retried
            // until the deadline: the scheduler owns retries and their backoff.
            configuration.connectionPool.retryConnectionEstablishment = false
            // The default (8 per host) would send `refresh.concurrency` calls
            // 8 at a time: every call to the one gateway host gets a connection.
            configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = maxConnections
            client = HTTPClient(
                eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration,
                backgroundActivityLogger: logger)
        }
    }

    private struct State {
        var current: Pool
        /// Calls under way, by pool.
        var calls: [ObjectIdentifier: Int] = [:]
        /// Replaced pools that still carry calls.
        var retired: [ObjectIdentifier: Pool] = [:]
        var isShutDown = false
    }

    private let state: Mutex<State>
    private let logger: Logger

    init(maxConnections: Int, connectTimeout: Duration, logger: Logger) {
        self.logger = logger
        state = Mutex(
            State(current: Pool(maxConnections: max(1, maxConnections), connectTimeout: connectTimeout, logger: logger))
        )
    }

    /// The number of connections the pool in use may open to one host.
    var maxConnections: Int {
        state.withLock { $0.current.maxConnections }
    }

    /// Makes a new pool when the size or the connect timeout changed; calls
    /// already under way finish on the old one, which is then closed.
    func resize(maxConnections requested: Int, connectTimeout: Duration) {
        let size = max(1, requested)
        let idle: Pool? = state.withLock { state in
            guard !state.isShutDown,
                state.current.maxConnections != size || state.current.connectTimeout != connectTimeout
            else { return nil }
            let old = state.current
            state.current = Pool(maxConnections: size, connectTimeout: connectTimeout, logger: logger)
            if state.calls[ObjectIdentifier(old), default: 0] == 0 { return old }
            state.retired[ObjectIdentifier(old)] = old
            return nil
        }
        if let idle { close(idle) }
    }

    /// Runs `body` with the client in use; the client stays open until it returns.
    func withClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        let pool = state.withLock { state in
            state.calls[ObjectIdentifier(state.current), default: 0] += 1
            return state.current
        }
        defer { callEnded(on: pool) }
        return try await body(pool.client)
    }

    private func callEnded(on pool: Pool) {
        let id = ObjectIdentifier(pool)
        let finished: Pool? = state.withLock { state in
            let left = state.calls[id, default: 1] - 1
            state.calls[id] = left == 0 ? nil : left
            guard left == 0 else { return nil }
            return state.retired.removeValue(forKey: id)
        }
        if let finished { close(finished) }
    }

    private func close(_ pool: Pool) {
        let logger = self.logger
        Task {
            do {
                try await pool.client.shutdown()
            } catch {
                logger.debug("gateway client shutdown", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Closes every pool; calls still under way fail.
    func shutdown() async {
        let pools = state.withLock { state in
            state.isShutDown = true
            let pools = [state.current] + Array(state.retired.values)
            state.retired.removeAll()
            return pools
        }
        for pool in pools {
            do {
                try await pool.client.shutdown()
            } catch {
                logger.debug("gateway client shutdown", metadata: ["error": "\(error)"])
            }
        }
    }
}
