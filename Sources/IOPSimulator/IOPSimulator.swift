import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
public import TokenKeeperCore

/// A local IOP gateway on loopback that behaves like the real one for
/// `/auth/token/create` and `/auth/token/refresh`: it checks the app key, the
/// timestamp window and the signature (with ``IOPGateway/IOPSignature``, the
/// client's own algorithm), exchanges one-use authorization codes, rotates
/// refresh tokens (the old one dies on use), keeps the refresh validity fixed
/// from authorization, and injects faults on demand. Counters record what a
/// client did, including the mistakes a correct client never makes (reusing a
/// rotated refresh token, two refreshes of one seller at once).
///
/// Every other API under the base path (`/rest/orders/get`), and any call to
/// ``SimulatorAddress/syncURL`` naming its API in `method`, is a business
/// call: after the same checks it needs the seller's current access token
/// (`access_token`, or `session`), and echoes the API, the seller and the
/// parameters and files it read (``SimulatorCounters/businessCalls``).
///
/// Tests, benchmarks and `tokenkeeper demo` host it in-process and drive it
/// through this Swift API; clients talk to it over HTTP at ``SimulatorAddress/baseURL``.
///
/// ```swift
/// let simulator = IOPSimulator(configuration: .init(appKey: "500102", appSecret: Secret("s3cret")))
/// let address = try await simulator.start()
/// simulator.addSeller(SimulatedSeller(sellerID: "1001"))
/// let code = try simulator.issueAuthorizationCode(for: "1001")
/// // … point a client at address.baseURL …
/// await simulator.shutdown()
/// ```
///
/// One simulator can serve several apps, each with its own secret, sellers
/// registered under one app key, counters per app, and Lazada's answer shape
/// (cross-border accounts included) for the apps configured so:
///
/// ```swift
/// let simulator = IOPSimulator(configuration: .init(
///     apps: ["500102": Secret("s3cret"), "600200": Secret("other")], answerShapesByApp: ["600200": .lazada]))
/// simulator.addSeller(.crossBorderAccount(ventures: [
///     VentureSeller(country: "sg", sellerID: "100015339"), VentureSeller(country: "th", sellerID: "100015340"),
/// ], appKey: "600200"))
/// // … later: simulator.counters(forApp: "600200").rotations
/// ```
public final class IOPSimulator: Sendable {
    private enum ServerState {
        case idle
        case starting
        case running(channel: any Channel, address: SimulatorAddress)
        case stopped
    }

    let core: SimulatorCore
    private let configuration: SimulatorConfiguration
    private let server = Locked(ServerState.idle)
    private let connections = ChannelRegistry()

    /// - Parameter configuration: Apps, clock, seed, listening address and behaviour.
    public init(configuration: SimulatorConfiguration) {
        self.configuration = configuration
        core = SimulatorCore(configuration: configuration)
    }

    /// A simulator that knows one app.
    public convenience init(
        appKey: String, appSecret: Secret, clock: any WallClock = SystemWallClock(), randomSeed: UInt64 = 0x5EED,
        answerShape: AnswerShape = .aliExpress
    ) {
        self.init(
            configuration: SimulatorConfiguration(
                appKey: appKey, appSecret: appSecret, clock: clock, randomSeed: randomSeed, answerShape: answerShape))
    }

    // MARK: - Lifecycle

    /// Starts listening.
    /// - Returns: The bound address; with port 0 the system picked a free port.
    /// - Throws: ``IOPSimulatorError/alreadyStarted`` on a second call,
    ///   ``IOPSimulatorError/bindFailed(host:port:reason:)`` when the socket cannot be opened.
    @discardableResult
    public func start() async throws(IOPSimulatorError) -> SimulatorAddress {
        try server.withLock { (state: inout ServerState) throws(IOPSimulatorError) in
            guard case .idle = state else { throw .alreadyStarted }
            state = .starting
        }
        let core = self.core
        let connections = self.connections
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SimulatorHTTPHandler(core: core))
                    connections.track(channel)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        } catch {
            server.withLock { $0 = .idle }
            throw .bindFailed(host: configuration.host, port: configuration.port, reason: "\(error)")
        }
        let address = SimulatorAddress(
            host: configuration.host, port: channel.localAddress?.port ?? configuration.port,
            basePath: configuration.basePath)
        server.withLock { $0 = .running(channel: channel, address: address) }
        configuration.logger.info("IOP simulator listening", metadata: ["url": "\(address.baseURL)"])
        return address
    }

    /// Stops listening and closes every connection; held answers are dropped
    /// (their tokens count as not delivered). Safe to call more than once.
    public func shutdown() async {
        let channel = server.withLock { state -> (any Channel)? in
            defer { state = .stopped }
            if case .running(let channel, _) = state { return channel }
            return nil
        }
        try? await channel?.close()
        for connection in connections.all() {
            try? await connection.close()
        }
    }

    /// Where the simulator listens, once started.
    public var address: SimulatorAddress? {
        server.withLock { state in
            if case .running(_, let address) = state { return address }
            return nil
        }
    }

    /// `http://127.0.0.1:PORT/rest`, once started.
    public var baseURL: String? { address?.baseURL }

    // MARK: - Behaviour and counters

    /// What the gateway currently does.
    public var behavior: GatewayBehavior {
        core.gateway.withLock { $0.behavior }
    }

    /// Changes the behaviour; the next request sees the change.
    public func updateBehavior(_ change: (inout GatewayBehavior) -> Void) {
        core.gateway.withLock { gateway in change(&gateway.behavior) }
    }

    /// A snapshot of the counters, every app's requests together.
    public var counters: SimulatorCounters {
        core.gateway.withLock { $0.counters }
    }

    /// A snapshot of the counters of one app: the requests that named
    /// `appKey` (`app_key`, or `client_id` on the authorization page) while the
    /// gateway knew it. All zero for an app that made no call. Requests naming
    /// no known app key count only in ``counters``.
    public func counters(forApp appKey: String) -> SimulatorCounters {
        core.gateway.withLock { $0.countersByApp[appKey] ?? SimulatorCounters() }
    }

    /// A snapshot of every app's counters, by app key; only apps that called appear.
    public var countersByApp: [String: SimulatorCounters] {
        core.gateway.withLock { $0.countersByApp }
    }

    /// Sets every counter to zero, every app's too (per-seller statistics and token logs stay).
    public func resetCounters() {
        core.gateway.withLock { $0.resetCounters() }
    }

    /// The gateway's current time.
    public var now: Timestamp {
        core.gateway.withLock { $0.now }
    }
}
