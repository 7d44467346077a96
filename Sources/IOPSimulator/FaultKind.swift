/// A way the simulated gateway can misbehave, as real gateways and the proxies
/// in front of them do.
///
/// Every kind except ``resetAfterRotation`` is decided when a request arrives
/// and *before* anything is consumed: the refresh token or authorization code
/// the request carries stays usable, exactly as when a real gateway fails
/// before reaching its token service. A correct client retries those with the
/// same refresh token and loses nothing.
public enum FaultKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// HTTP 500 with an HTML page.
    case http500
    /// HTTP 502 with a proxy's HTML page.
    case http502
    /// HTTP 503 with a proxy's HTML page.
    case http503
    /// HTTP 200 with an HTML page instead of JSON (a captive portal, a WAF page).
    case htmlPage
    /// The answer comes only after ``GatewayBehavior/slowResponseDelay``, and then
    /// it is HTTP 504: a client whose timeout is shorter sees a timeout. Nothing
    /// is consumed, so the client may retry safely.
    case slowResponse
    /// The connection is reset (TCP RST) without an answer.
    case connectionReset
    /// `ApiCallLimit` with "… ban will last N seconds"; the simulator then refuses
    /// every call of the same app key for those N seconds
    /// (``GatewayBehavior/enforcesThrottleBan``).
    case throttled
    /// HTTP 200 with a JSON body cut short (dummy tokens, never issued ones).
    case malformedJSON
    /// The gateway's `ServiceTimeout` (type `ISP`).
    case serviceTimeout
    /// Another `ISP` error whose code a client does not know (`InternalError`):
    /// a client must treat it as transient because of its type.
    case ispError
    /// The nasty real-world case: the gateway rotated the refresh token (or
    /// consumed the code), then the connection dropped before the answer
    /// arrived. The client still holds the old refresh token, which is now dead:
    /// its next try gets `IllegalRefreshToken`, which no client can tell apart
    /// from a revocation. tokenkeeper has to live with it (the seller must
    /// authorize again); it is the reason a client must never lose an answer it
    /// *did* receive. A business call it meets is served, and its answer lost
    /// the same way. Off unless asked for by name: it is not in ``withoutEffect``.
    /// Counted apart from client bugs (``SimulatorCounters/reusesAfterLostAnswer``).
    case resetAfterRotation

    /// The kinds that leave the gateway's state untouched: every kind but
    /// ``resetAfterRotation``. "Fail 30% of calls with every fault kind" means these.
    public static let withoutEffect: [FaultKind] = allCases.filter { !$0.consumesRequest }

    /// True for ``resetAfterRotation``, the only kind that happens after the
    /// request has taken effect.
    public var consumesRequest: Bool { self == .resetAfterRotation }

    public var description: String { rawValue }
}
