public import Logging
public import TokenKeeperCore

/// How an ``IOPSimulator`` is set up. Everything but ``behavior`` is fixed at
/// creation; ``behavior`` (the apps and their secrets among it) can be
/// changed while it runs.
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
    /// The shape of success answers: AliExpress's, or Lazada's for a
    /// simulator standing in for `https://auth.lazada.com/rest`.
    public var answerShape: AnswerShape
    /// Apps answered in another shape than ``answerShape``, by app key: one
    /// simulator standing in for both marketplaces.
    public var answerShapesByApp: [String: AnswerShape]

    /// A simulator that knows one app.
    /// - Parameters:
    ///   - appKey: The app key clients must send.
    ///   - appSecret: The secret the signature is checked with.
    ///   - clock: The gateway's clock.
    ///   - randomSeed: Seeds faults, encodings and token texts.
    ///   - answerShape: The marketplace whose answers it gives.
    public init(
        appKey: String, appSecret: Secret, clock: any WallClock = SystemWallClock(), randomSeed: UInt64 = 0x5EED,
        answerShape: AnswerShape = .aliExpress
    ) {
        self.init(apps: [appKey: appSecret], clock: clock, randomSeed: randomSeed, answerShape: answerShape)
    }

    /// A simulator that knows several apps, each request checked with the
    /// secret of the app key it names. Sellers are open to every app unless
    /// registered under one (``SimulatedSeller/appKey``); counters are kept
    /// per app as well (``IOPSimulator/counters(forApp:)``).
    /// - Parameters:
    ///   - apps: App keys with their secrets.
    ///   - clock: The gateway's clock.
    ///   - randomSeed: Seeds faults, encodings and token texts.
    ///   - answerShape: The marketplace whose answers it gives.
    ///   - answerShapesByApp: Apps answered in another shape, by app key.
    public init(
        apps: [String: Secret], clock: any WallClock = SystemWallClock(), randomSeed: UInt64 = 0x5EED,
        answerShape: AnswerShape = .aliExpress, answerShapesByApp: [String: AnswerShape] = [:]
    ) {
        self.init(
            behavior: GatewayBehavior(apps: apps), clock: clock, randomSeed: randomSeed, answerShape: answerShape,
            answerShapesByApp: answerShapesByApp)
    }

    /// A simulator with the given behaviour.
    public init(
        behavior: GatewayBehavior, clock: any WallClock = SystemWallClock(), randomSeed: UInt64 = 0x5EED,
        host: String = "127.0.0.1", port: Int = 0, basePath: String = "/rest",
        maxRequestBodyBytes: Int = 64 * 1024,
        logger: Logger = Logger(label: "iop-simulator", factory: { _ in SwiftLogNoOpLogHandler() }),
        answerShape: AnswerShape = .aliExpress, answerShapesByApp: [String: AnswerShape] = [:]
    ) {
        self.behavior = behavior
        self.answerShape = answerShape
        self.answerShapesByApp = answerShapesByApp
        self.clock = clock
        self.randomSeed = randomSeed
        self.host = host
        self.port = port
        self.basePath = basePath
        self.maxRequestBodyBytes = maxRequestBodyBytes
        self.logger = logger
    }
}
