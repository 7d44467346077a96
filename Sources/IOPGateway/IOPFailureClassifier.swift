import Foundation
public import TokenKeeperCore

/// The one place that decides what a gateway error means. Only
/// ``FailureClass/accountRejected`` may ever cost a seller its authorization,
/// so that class is given to exactly the codes the vendor documents as a dead
/// refresh token, and everything not understood is transient.
public enum IOPFailureClassifier {
    /// Codes that mean the seller's refresh token will never work again.
    public static let accountRejectedCodes: Set<String> = [
        IOPFailureCode.illegalRefreshToken, IOPFailureCode.authTypeUnsupported,
    ]

    /// Codes that mean our own set-up is wrong; no seller is to blame, and
    /// retrying will not help until an operator fixes it.
    public static let configurationCodes: Set<String> = [
        IOPFailureCode.incompleteSignature, IOPFailureCode.invalidAppKey, IOPFailureCode.missingAppKey,
        IOPFailureCode.invalidApiPath, IOPFailureCode.missingParameter, IOPFailureCode.illegalTimestamp,
    ]

    /// Codes that mean the gateway throttles this app.
    public static let throttlingCodes: Set<String> = [IOPFailureCode.apiCallLimit, IOPFailureCode.appCallLimit]

    /// Known codes of passing trouble on the gateway's side.
    public static let transientCodes: Set<String> = [IOPFailureCode.serviceTimeout]

    /// Error types (`type` in the envelope) that blame the gateway, not the caller.
    public static let gatewaySideTypes: Set<String> = ["ISP", "SYSTEM"]

    /// How long to stay away when a throttling message gives no duration.
    public static let defaultBan: Duration = .seconds(1)

    /// Classifies an error the gateway stated in its body.
    /// - Parameters:
    ///   - code: The envelope's `code`.
    ///   - type: The envelope's `type` (`ISV`, `ISP`, `SYSTEM`), if any.
    ///   - message: The envelope's `message` or `msg`; read for the ban duration.
    ///   - requestID: The gateway's `request_id`, kept on the failure.
    ///   - httpStatus: The HTTP status the error came with.
    /// - Returns: The classified failure; unknown codes are transient and flagged
    ///   ``TokenKeeperCore/GatewayFailure/isUnknownCode``.
    public static func classify(
        code: String, type: String?, message: String, requestID: String?, httpStatus: Int?
    ) -> GatewayFailure {
        func failure(_ failureClass: FailureClass, unknown: Bool = false) -> GatewayFailure {
            GatewayFailure(
                failureClass, code: code, message: message, requestID: requestID, httpStatus: httpStatus,
                isUnknownCode: unknown)
        }
        // The code decides before the type: ServiceTimeout may come typed ISP,
        // and a throttle must keep its ban duration.
        if accountRejectedCodes.contains(code) { return failure(.accountRejected) }
        if configurationCodes.contains(code) { return failure(.configuration) }
        if throttlingCodes.contains(code) { return failure(.throttled(retryAfter: banDuration(in: message))) }
        if transientCodes.contains(code) { return failure(.transient) }
        if let type, gatewaySideTypes.contains(type.uppercased()) { return failure(.transient) }
        return failure(.transient, unknown: true)
    }

    /// Classifies an HTTP answer whose body held no IOP error envelope.
    ///
    /// - 5xx, 408, 425: transient.
    /// - 429: throttled, for `Retry-After` (or ``defaultBan``).
    /// - 3xx, 404, 405, 410: configuration. The gateway answers its API paths
    ///   with IOP JSON; a redirect or a missing resource means the base URL or an
    ///   API path is wrong, which retrying will not cure (and a redirect is not
    ///   followed, so a token is never re-sent to another place).
    /// - Any other status: transient, flagged unknown so that it is logged loudly.
    /// - Parameters:
    ///   - status: The HTTP status, not 2xx.
    ///   - retryAfter: The parsed `Retry-After` header, if any.
    ///   - requestID: A request id found in the body, if any.
    public static func classify(
        httpStatus status: Int, retryAfter: Duration?, requestID: String?
    ) -> GatewayFailure {
        let code = IOPFailureCode.httpStatus(status)
        func failure(_ failureClass: FailureClass, _ message: String, unknown: Bool = false) -> GatewayFailure {
            GatewayFailure(
                failureClass, code: code, message: message, requestID: requestID, httpStatus: status,
                isUnknownCode: unknown)
        }
        switch status {
        case 502, 504:
            // A proxy that gave up waiting: the gateway behind it may have
            // acted on the request.
            var lost = failure(.transient, "the gateway answered HTTP \(status)")
            lost.answerMayBeLost = true
            return lost
        case 500...599:
            return failure(.transient, "the gateway answered HTTP \(status)")
        case 408, 425:
            return failure(.transient, "the gateway answered HTTP \(status)")
        case 429:
            return failure(
                .throttled(retryAfter: max(retryAfter ?? defaultBan, defaultBan)),
                "the gateway answered HTTP 429 (too many requests)")
        case 300...399:
            return failure(
                .configuration,
                "the gateway URL redirects (HTTP \(status)); configure the final URL (https, exact host and path)")
        case 404, 405, 410:
            return failure(
                .configuration,
                "the gateway has no such API (HTTP \(status)); check the gateway URL and API paths")
        default:
            return failure(.transient, "the gateway answered HTTP \(status) without an IOP error", unknown: true)
        }
    }

    /// The ban in a throttling message such as "…, ban will last 3 seconds",
    /// or ``defaultBan`` when the message gives none. Never shorter than
    /// ``defaultBan``: coming back sooner only meets the ban again.
    public static func banDuration(in message: String) -> Duration {
        let marker = "ban will last"
        guard let range = message.range(of: marker, options: .caseInsensitive) else { return defaultBan }
        let number = message[range.upperBound...]
            .drop { $0 == " " }
            .prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        guard let seconds = Double(number), seconds.isFinite, seconds >= 0 else { return defaultBan }
        // A day caps an absurd figure; the scheduler never waits on the gateway's word forever.
        let milliseconds = Int64(min(seconds, 86_400) * 1000)
        return max(.milliseconds(milliseconds), defaultBan)
    }
}
