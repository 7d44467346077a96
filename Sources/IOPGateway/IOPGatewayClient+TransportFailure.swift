import AsyncHTTPClient
import NIOCore
import TokenKeeperCore

extension IOPGatewayClient {
    /// Classifies an error from below the IOP protocol: HTTP client, NIO,
    /// TLS, cancellation. Everything here is transient except a URL the HTTP
    /// client cannot use, which is our configuration.
    ///
    /// TLS errors are recognised by their type's module (NIOSSL), since this
    /// target does not link NIOSSL itself; a miss only changes the code from
    /// ``IOPFailureCode/tlsFailed`` to ``IOPFailureCode/connectionFailed``.
    static func failure(for error: any Error) -> GatewayFailure {
        if let failure = error as? GatewayFailure { return failure }
        func transient(_ code: String, _ message: String, answerMayBeLost: Bool = false) -> GatewayFailure {
            GatewayFailure(.transient, code: code, message: message, answerMayBeLost: answerMayBeLost)
        }
        if error is CancellationError {
            return transient(IOPFailureCode.cancelled, "the call was cancelled")
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .getConnectionFromPoolTimeout:
                return transient(
                    IOPFailureCode.timeout, "could not connect to the gateway in time (\(error.shortDescription))")
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                // The request may have been sent and acted on.
                return transient(
                    IOPFailureCode.timeout, "the gateway did not answer in time (\(error.shortDescription))",
                    answerMayBeLost: true)
            case .connectTimeout, .tlsHandshakeTimeout:
                return transient(
                    IOPFailureCode.timeout, "could not connect to the gateway in time (\(error.shortDescription))")
            case .cancelled, .alreadyShutdown:
                return transient(IOPFailureCode.cancelled, "the call was cancelled (\(error.shortDescription))")
            case .invalidURL, .emptyHost, .emptyScheme:
                return GatewayFailure(
                    .configuration, code: IOPFailureCode.invalidConfiguration,
                    message: "the gateway URL cannot be used (\(error.shortDescription))")
            case .remoteConnectionClosed:
                return transient(
                    IOPFailureCode.connectionFailed, "the gateway closed the connection before answering",
                    answerMayBeLost: true)
            default:
                return transient(IOPFailureCode.connectionFailed, "HTTP failure: \(error.shortDescription)")
            }
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return transient(IOPFailureCode.timeout, "could not connect to the gateway in time")
        }
        let typeName = String(reflecting: type(of: error))
        let detail = IOPResponseDecoder.sanitize("\(error)", redacting: [])
        if typeName.hasPrefix("NIOSSL.") || typeName.contains("SSL") || typeName.contains("TLS") {
            return transient(IOPFailureCode.tlsFailed, "TLS with the gateway failed: \(detail)")
        }
        // Refused, reset, unreachable, DNS: NIOConnectionError, IOError and friends.
        return transient(IOPFailureCode.connectionFailed, "could not reach the gateway: \(detail)")
    }
}
