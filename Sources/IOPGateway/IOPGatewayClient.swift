import AsyncHTTPClient
public import Logging
import NIOCore
import NIOHTTP1
import Synchronization
public import TokenKeeperCore

/// The ``TokenKeeperCore/TokenGateway`` over HTTP: signs with
/// ``IOPSignature``, sends with AsyncHTTPClient, decodes with
/// ``IOPResponseDecoder``, and throws only classified
/// ``TokenKeeperCore/GatewayFailure``s.
///
/// One client serves the whole process (its connection pool is shared by all
/// calls); call ``shutdown()`` before dropping it. Works over TLS to the real
/// gateway and over plain HTTP to a local simulator.
public final class IOPGatewayClient: TokenGateway {
    private let connections: GatewayConnections
    /// The configuration and what its validation found, checked once per
    /// change rather than on every call.
    private let settings: Mutex<(configuration: GatewayConfiguration, problem: GatewayFailure?)>
    private let clock: any WallClock
    private let logger: Logger

    /// - Parameters:
    ///   - configuration: Gateway, credentials and limits; all can change
    ///     with ``update(configuration:)``.
    ///   - clock: Supplies the signed `timestamp` and the grants' `receivedAt`.
    ///   - logger: Receives one line per call: API, seller, outcome, request id;
    ///     never a token (a refresh token appears as its fingerprint).
    public init(
        configuration: GatewayConfiguration, clock: any WallClock = SystemWallClock(),
        logger: Logger = Logger(label: "tokenkeeper.gateway")
    ) {
        self.connections = GatewayConnections(
            maxConnections: configuration.maxConnections, connectTimeout: configuration.connectTimeout, logger: logger)
        self.settings = Mutex((configuration, Self.problem(with: configuration)))
        self.clock = clock
        self.logger = logger
    }

    private static func problem(with configuration: GatewayConfiguration) -> GatewayFailure? {
        do throws(GatewayFailure) {
            try configuration.validate()
            return nil
        } catch {
            return error
        }
    }

    /// The configuration the next call will use.
    public var configuration: GatewayConfiguration {
        settings.withLock { $0.configuration }
    }

    /// Replaces the configuration for calls that start from now on (the daemon
    /// re-reads the app secret and `refresh.concurrency` on `SIGHUP`). Calls in
    /// flight finish with the old one; a new connection count or connect
    /// timeout takes a new connection pool, and the old one closes when its
    /// last call ends.
    public func update(configuration: GatewayConfiguration) {
        let problem = Self.problem(with: configuration)
        settings.withLock { $0 = (configuration, problem) }
        connections.resize(maxConnections: configuration.maxConnections, connectTimeout: configuration.connectTimeout)
    }

    /// How many connections the pool in use opens to the gateway at most.
    public var maxConnections: Int {
        connections.maxConnections
    }

    /// Closes the connection pool. Call once, before the client is dropped;
    /// calls made afterwards fail as ``IOPFailureCode/cancelled``.
    public func shutdown() async {
        await connections.shutdown()
    }

    public func refresh(refreshToken: Secret) async throws(GatewayFailure) -> TokenGrant {
        guard !refreshToken.isEmpty else {
            // Sending nothing would earn `MissingParameter`, a configuration
            // error that blames every seller for one account's empty token.
            throw GatewayFailure(
                .accountRejected, code: IOPFailureCode.missingRefreshToken,
                message: "the stored refresh token is empty; the seller must authorize again")
        }
        return try await call(
            api: "refresh", redacting: [refreshToken],
            metadata: ["refresh_token": "\(refreshToken.fingerprint)"]
        ) { configuration, timestamp throws(GatewayFailure) in
            try IOPRequest.refresh(refreshToken: refreshToken, configuration: configuration, timestamp: timestamp)
        }
    }

    public func createToken(code: String) async throws(GatewayFailure) -> TokenGrant {
        guard !code.isEmpty else {
            throw GatewayFailure(
                .accountRejected, code: IOPFailureCode.missingAuthorizationCode,
                message: "the authorization code is empty")
        }
        return try await call(api: "create", redacting: [Secret(code)], metadata: [:]) {
            configuration, timestamp throws(GatewayFailure) in
            try IOPRequest.createToken(code: code, configuration: configuration, timestamp: timestamp)
        }
    }

    /// What came back over HTTP, before any interpretation.
    private struct RawResponse: Sendable {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: ByteBuffer
    }

    private func call(
        api: String, redacting secrets: [Secret], metadata: Logger.Metadata,
        build: (GatewayConfiguration, Timestamp) throws(GatewayFailure) -> IOPRequest
    ) async throws(GatewayFailure) -> TokenGrant {
        var logger = self.logger
        logger[metadataKey: "iop.api"] = "\(api)"
        for (key, value) in metadata { logger[metadataKey: key] = value }

        let (configuration, problem) = settings.withLock { $0 }
        let outcome: Result<TokenGrant, GatewayFailure>
        do throws(GatewayFailure) {
            if let problem { throw problem }
            let request = try build(configuration, clock.now())
            let raw = try await send(request, configuration: configuration)
            outcome = IOPResponseDecoder(maxResponseBytes: configuration.maxResponseBytes).decode(
                status: raw.status, headers: raw.headers, body: raw.body.readableBytesView,
                receivedAt: clock.now(), redacting: secrets)
        } catch {
            outcome = .failure(error)
        }
        log(outcome, logger: logger)
        return try outcome.get()
    }

    private func send(_ request: IOPRequest, configuration: GatewayConfiguration) async throws(GatewayFailure)
        -> RawResponse
    {
        let httpRequest = Self.httpRequest(for: request)
        let timeout = configuration.requestTimeout
        let limit = configuration.maxResponseBytes
        let connections = self.connections
        do {
            // AsyncHTTPClient's deadline ends when the head arrives; the
            // timeout bounds the body too, so a trickling answer cannot hold a
            // refresh (and its lease) forever.
            return try await withTimeout(timeout, timedOut: { HTTPClientError.deadlineExceeded }) {
                try await connections.withClient { client in
                    let response = try await client.execute(httpRequest, deadline: .now() + TimeAmount(timeout))
                    let status = Int(response.status.code)
                    let body: ByteBuffer
                    do {
                        body = try await response.body.collect(upTo: limit)
                    } catch is NIOTooManyBytesError {
                        throw IOPResponseDecoder.responseTooLarge(status: status, limit: limit)
                    }
                    return RawResponse(
                        status: status, headers: response.headers.map { (name: $0.name, value: $0.value) },
                        body: body)
                }
            }
        } catch {
            throw Self.failure(for: error)
        }
    }

    private static func httpRequest(for request: IOPRequest) -> HTTPClientRequest {
        var httpRequest = HTTPClientRequest(url: request.url)
        httpRequest.method = .POST
        for header in request.headers { httpRequest.headers.add(name: header.name, value: header.value) }
        httpRequest.body = .bytes(ByteBuffer(string: request.body))
        return httpRequest
    }

    private func log(_ outcome: Result<TokenGrant, GatewayFailure>, logger: Logger) {
        switch outcome {
        case .success(let grant):
            logger.debug(
                "gateway call succeeded",
                metadata: [
                    "seller_id": "\(grant.sellerID)", "iop.outcome": "granted",
                    "iop.request_id": "\(grant.requestID ?? "-")",
                    "iop.final_grant": "\(grant.isFinalGrant)",
                ])
        case .failure(let failure):
            var metadata: Logger.Metadata = [
                "iop.outcome": "\(Self.outcomeName(failure.failureClass))", "iop.code": "\(failure.code)",
                "iop.request_id": "\(failure.requestID ?? "-")",
            ]
            if let status = failure.httpStatus { metadata["http.status"] = "\(status)" }
            // Callers log each outcome once, with the seller and at the level
            // its class deserves; only an unknown code is loud here, because
            // it may need a new rule in IOPFailureClassifier.
            let level: Logger.Level = failure.isUnknownCode ? .error : .debug
            let text = failure.isUnknownCode ? "gateway answered an unknown error code" : "gateway call failed"
            logger.log(level: level, "\(text): \(failure.description)", metadata: metadata)
        }
    }

    private static func outcomeName(_ failureClass: FailureClass) -> String {
        switch failureClass {
        case .accountRejected: "account_rejected"
        case .configuration: "configuration"
        case .transient: "transient"
        case .throttled: "throttled"
        }
    }
}
