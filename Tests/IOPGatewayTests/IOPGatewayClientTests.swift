import AsyncHTTPClient
import Logging
import NIOCore
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import IOPGateway

@Suite struct IOPGatewayClientTests {
    func configuration(port: Int, requestTimeout: Duration = .seconds(5)) -> GatewayConfiguration {
        GatewayConfiguration(
            baseURL: "http://127.0.0.1:\(port)/rest", appKey: "12345678", appSecret: Secret("helloworld-secret"),
            connectTimeout: .seconds(2), requestTimeout: requestTimeout)
    }

    func expectFailure(
        _ body: () async throws(GatewayFailure) -> TokenGrant, sourceLocation: SourceLocation = #_sourceLocation
    ) async -> GatewayFailure? {
        do {
            _ = try await body()
            Issue.record("the call succeeded", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func classifiesARefusedConnectionAsTransient() async throws {
        let closed = try LoopbackSocket(listening: false)
        let log = LogRecorder()
        let client = IOPGatewayClient(
            configuration: configuration(port: closed.port), clock: ManualWallClock(Fixture.receivedAt),
            logger: log.logger())
        let failure = await expectFailure { () async throws(GatewayFailure) in
            try await client.refresh(refreshToken: Secret(Fixture.refreshToken))
        }
        await client.shutdown()
        #expect(failure?.code == IOPFailureCode.connectionFailed)
        #expect(failure?.failureClass == .transient)
        #expect(failure?.httpStatus == nil)
        let lines = log.rendered
        #expect(lines.contains { $0.contains("ConnectionFailed") && $0.contains("iop.api=refresh") })
        #expect(lines.contains { $0.contains(Secret(Fixture.refreshToken).fingerprint) })
        let leaking = lines.filter { $0.contains(Fixture.refreshToken) || $0.contains("helloworld-secret") }
        #expect(leaking.isEmpty, "\(leaking.count) log lines hold a token or the secret")
    }

    @Test(.timeLimit(.minutes(1)))
    func givesUpAtTheRequestTimeoutWhenTheGatewayNeverAnswers() async throws {
        // Connections complete in the kernel's backlog; nobody ever reads or writes.
        let silent = try LoopbackSocket(listening: true)
        defer { silent.close() }
        let client = IOPGatewayClient(
            configuration: configuration(port: silent.port, requestTimeout: .milliseconds(300)),
            logger: LogRecorder().logger())
        let started = ContinuousClock.now
        let failure = await expectFailure { () async throws(GatewayFailure) in
            try await client.createToken(code: "3_500102_abc")
        }
        let elapsed = ContinuousClock.now - started
        await client.shutdown()
        #expect(failure?.code == IOPFailureCode.timeout)
        #expect(failure?.failureClass == .transient)
        #expect(elapsed < .seconds(10))
    }

    @Test func refusesAnEmptyRefreshTokenWithoutCallingTheGateway() async throws {
        let client = IOPGatewayClient(configuration: configuration(port: 9), logger: LogRecorder().logger())
        let failure = await expectFailure { () async throws(GatewayFailure) in
            try await client.refresh(refreshToken: Secret(""))
        }
        await client.shutdown()
        #expect(failure?.code == IOPFailureCode.missingRefreshToken)
        #expect(failure?.failureClass == .accountRejected)
    }

    @Test func reportsAnUnusableConfigurationWithoutCallingTheGateway() async throws {
        var broken = configuration(port: 9)
        broken.baseURL = "gopher://example.com/rest"
        let client = IOPGatewayClient(configuration: broken, logger: LogRecorder().logger())
        let failure = await expectFailure { () async throws(GatewayFailure) in
            try await client.createToken(code: "c")
        }
        await client.shutdown()
        #expect(failure?.failureClass == .configuration)
        #expect(failure?.code == IOPFailureCode.invalidConfiguration)
    }

    @Test func usesAnUpdatedConfigurationForLaterCalls() async throws {
        let client = IOPGatewayClient(configuration: configuration(port: 9), logger: LogRecorder().logger())
        var rotated = client.configuration
        rotated.appSecret = Secret("new-secret")
        rotated.baseURL = "ftp://nowhere"
        client.update(configuration: rotated)
        #expect(client.configuration.appSecret == Secret("new-secret"))
        let failure = await expectFailure { () async throws(GatewayFailure) in
            try await client.createToken(code: "c")
        }
        await client.shutdown()
        #expect(failure?.failureClass == .configuration)
    }

    @Test func failsCallsAfterShutdownAsCancelled() async throws {
        let client = IOPGatewayClient(configuration: configuration(port: 9), logger: LogRecorder().logger())
        await client.shutdown()
        let failure = await expectFailure { () async throws(GatewayFailure) in
            try await client.createToken(code: "c")
        }
        #expect(failure?.failureClass == .transient)
        #expect(failure?.code == IOPFailureCode.cancelled)
        await client.shutdown()
    }

    // MARK: Transport error classification

    struct FakeSSLHandshakeError: Error {}
    struct SomethingElse: Error {}

    @Test func classifiesTransportErrors() {
        let cases: [(any Error, String, FailureClass)] = [
            (HTTPClientError.deadlineExceeded, IOPFailureCode.timeout, .transient),
            (HTTPClientError.connectTimeout, IOPFailureCode.timeout, .transient),
            (HTTPClientError.readTimeout, IOPFailureCode.timeout, .transient),
            (HTTPClientError.tlsHandshakeTimeout, IOPFailureCode.timeout, .transient),
            (ChannelError.connectTimeout(.seconds(1)), IOPFailureCode.timeout, .transient),
            (HTTPClientError.remoteConnectionClosed, IOPFailureCode.connectionFailed, .transient),
            (IOError(errnoCode: 104, reason: "read"), IOPFailureCode.connectionFailed, .transient),
            (SomethingElse(), IOPFailureCode.connectionFailed, .transient),
            (FakeSSLHandshakeError(), IOPFailureCode.tlsFailed, .transient),
            (CancellationError(), IOPFailureCode.cancelled, .transient),
            (HTTPClientError.cancelled, IOPFailureCode.cancelled, .transient),
            (HTTPClientError.invalidURL, IOPFailureCode.invalidConfiguration, .configuration),
        ]
        for (error, code, failureClass) in cases {
            let failure = IOPGatewayClient.failure(for: error)
            #expect(failure.code == code, "\(error)")
            #expect(failure.failureClass == failureClass, "\(error)")
            #expect(failure.requestID == nil)
        }
        let passedThrough = GatewayFailure(.accountRejected, code: "IllegalRefreshToken", message: "m")
        #expect(IOPGatewayClient.failure(for: passedThrough) == passedThrough)
    }
}
