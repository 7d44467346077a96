public import Logging
public import TokenKeeperCore

/// How an ``IOPSimulator`` is set up. Everything but ``behavior`` is fixed at
/// creation; ``behavior`` can be changed while it runs.
public struct SimulatorConfiguration: Sendable {
    /// The address to listen on; loopback by default.
    public var host: String
    /// The port; 0 picks a free one (read it from ``IOPSimulator/start()``).
    public var port: Int
    /// The REST root the APIs live under, as in `https://api-sg.aliexpress.com/rest`.
    public var basePath: String
    /// The gateway's clock: token times, code expiry, the timestamp window, bans
    /// and the `Date` header all read it, so tests can move time.
    public var clock: any WallClock
    /// Seeds the generator behind faults, number encodings, tokens and request ids.
    public var randomSeed: UInt64
    /// Larger request bodies get HTTP 413.
    public var maxRequestBodyBytes: Int
    /// Where the simulator logs; quiet unless given a logger. Tokens appear only
    /// as fingerprints.
    public var logger: Logger
    /// What the gateway does.
    public var behavior: GatewayBehavior

    /// A simulator that knows one app.
    /// - Parameters:
    ///   - appKey: The app key clients must send.
    ///   - appSecret: The secret the signature is checked with.
    ///   - clock: The gateway's clock.
    ///   - randomSeed: Seeds faults, encodings and token texts.
    public init(
        appKey: String, appSecret: Secret, clock: any WallClock = SystemWallClock(), randomSeed: UInt64 = 0x5EED
    ) {
        self.init(behavior: GatewayBehavior(apps: [appKey: appSecret]), clock: clock, randomSeed: randomSeed)
    }

    /// A simulator with the given behaviour.
    public init(
        behavior: GatewayBehavior, clock: any WallClock = SystemWallClock(), randomSeed: UInt64 = 0x5EED,
        host: String = "127.0.0.1", port: Int = 0, basePath: String = "/rest",
        maxRequestBodyBytes: Int = 64 * 1024,
        logger: Logger = Logger(label: "iop-simulator", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.behavior = behavior
        self.clock = clock
        self.randomSeed = randomSeed
        self.host = host
        self.port = port
        self.basePath = basePath
        self.maxRequestBodyBytes = maxRequestBodyBytes
        self.logger = logger
    }
}
