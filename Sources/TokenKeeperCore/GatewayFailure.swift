/// A failed call to the IOP gateway, classified. The class decides everything
/// downstream: only ``FailureClass/accountRejected`` may ever mark a seller
/// `reauth_required`.
public struct GatewayFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var failureClass: FailureClass
    /// The gateway's error code (`IllegalRefreshToken`), or one of ours for
    /// failures below the protocol (`HTTP503`, `Timeout`, `ConnectionFailed`,
    /// `MalformedResponse`, `NonJSONResponse`, `ResponseTooLarge`).
    public var code: String
    /// A human-readable explanation. Never contains a token or secret.
    public var message: String
    /// The gateway's `request_id`, for support tickets.
    public var requestID: String?
    /// The HTTP status, when a response arrived.
    public var httpStatus: Int?
    /// True when the gateway answered with a code we do not know; it is treated
    /// as transient but logged loudly.
    public var isUnknownCode: Bool
    /// True when the request may have reached the gateway and its answer was
    /// lost (a timeout after sending, a connection closed before the answer):
    /// the gateway may have rotated the refresh token without our seeing the
    /// new one. A rejection of that token next time is then ``StatusReason/rotationLost``.
    public var answerMayBeLost: Bool

    public init(
        _ failureClass: FailureClass, code: String, message: String, requestID: String? = nil,
        httpStatus: Int? = nil, isUnknownCode: Bool = false, answerMayBeLost: Bool = false
    ) {
        self.failureClass = failureClass
        self.code = code
        self.message = message
        self.requestID = requestID
        self.httpStatus = httpStatus
        self.isUnknownCode = isUnknownCode
        self.answerMayBeLost = answerMayBeLost
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let requestID { text += " (request_id \(requestID))" }
        return text
    }
}

/// What a gateway failure means for the seller and for the daemon.
public enum FailureClass: Sendable, Equatable {
    /// The refresh token is dead (`IllegalRefreshToken`, `AUTH_TYPE_UNSUPPORTED`):
    /// the seller must authorize again.
    case accountRejected
    /// Our configuration is wrong (signature, app key, API path, clock); no
    /// account is to blame.
    case configuration
    /// The call may succeed later (network, timeout, 5xx, malformed body, unknown code).
    case transient
    /// The gateway throttles us; nothing should be sent before `retryAfter`.
    case throttled(retryAfter: Duration)

    /// True for failures that retrying can cure without anyone's help.
    public var isRetryable: Bool {
        switch self {
        case .transient, .throttled: true
        case .accountRejected, .configuration: false
        }
    }
}
