/// What the simulator has seen, for tests to assert on. A snapshot: read
/// ``IOPSimulator/counters`` again for fresh figures.
///
/// Every request has exactly one outcome: a success (``successes``), a
/// rejection by the gateway's own rules (``rejections``, by error code, or
/// `HTTP404`/`HTTP405`/`HTTP413` for requests outside the protocol), or an
/// injected fault (``faults``).
public struct SimulatorCounters: Sendable, Equatable {
    /// Every HTTP request received.
    public var requests = 0
    /// Requests by API path (`/auth/token/refresh`, `/orders/get`), or for a
    /// `/sync` call by its `method` (`aliexpress.solution.order.get`); requests
    /// outside the base path are counted under their full path.
    public var requestsByAPI: [String: Int] = [:]
    /// Successful answers by API (as in ``requestsByAPI``).
    public var successes: [String: Int] = [:]
    /// Refusals by error code (`IllegalRefreshToken`, `IncompleteSignature`, …).
    public var rejections: [String: Int] = [:]
    /// Injected faults by kind (a ``FaultKind/resetAfterRotation`` counts only
    /// when it actually hit a success).
    public var faults: [FaultKind: Int] = [:]
    /// Authorization codes exchanged for tokens.
    public var codeExchanges = 0
    /// An authorization code presented again after its exchange.
    public var codeReuses = 0
    /// Refresh tokens rotated (successful `/auth/token/refresh` calls).
    public var rotations = 0
    /// A refresh token presented again after it had been rotated and its answer
    /// delivered: the client sent one refresh token twice. Must stay 0 for a
    /// correct client.
    public var refreshTokenReuses = 0
    /// A refresh token presented again after a ``FaultKind/resetAfterRotation``
    /// swallowed the answer of its rotation: not the client's fault.
    public var reusesAfterLostAnswer = 0
    /// A refresh for a seller arrived while another refresh for the same seller
    /// was still being answered. Must stay 0 for a correct client.
    public var overlappingRefreshes = 0
    /// The most refreshes being answered at once, all sellers together, since
    /// the start or the last ``IOPSimulator/resetCounters()``: how much of its
    /// concurrency a client really used.
    public var peakConcurrentRefreshes = 0
    /// Refreshes that arrived after the seller's current access token had
    /// expired: the client refreshed too late and its readers held an expired
    /// token meanwhile. Must stay 0 for a client that keeps up.
    public var refreshesAfterAccessExpiry = 0
    /// Calls refused because a throttling ban was still running.
    public var callsDuringBan = 0
    /// Successful answers that could not be written (the client had gone):
    /// their tokens were issued but not handed out.
    public var answersNotDelivered = 0
    /// Refreshes refused while ``GatewayBehavior/rejectsAllRefreshTokens`` was on.
    public var massRejections = 0
    /// Redirects from the authorization page with a fresh code.
    public var authorizations = 0
    /// Business API calls (any API but the token APIs, under the base path or
    /// on `/sync`) that passed the protocol's own gates (method, size, body,
    /// throttling ban, injected faults), whatever their outcome.
    public var businessCalls = 0
    /// Business calls answered with data: a valid signature and the seller's
    /// current access token.
    public var businessCallsServed = 0
    /// Business calls refused for their access token: none given
    /// (`MissingParameter`), or `IllegalAccessToken` (unknown, expired,
    /// another app's, or not the seller's current one).
    public var businessCallsRejectedForToken = 0
    /// Business calls served, by the seller key of their access token.
    public var businessCallsBySeller: [String: Int] = [:]

    public init() {}

    /// The number of faults of `kind`.
    public func faults(_ kind: FaultKind) -> Int { faults[kind, default: 0] }

    /// The number of rejections with `code`.
    public func rejections(_ code: String) -> Int { rejections[code, default: 0] }

    /// The number of requests to `apiPath`; for a `/sync` call, its `method`.
    public func requests(to apiPath: String) -> Int { requestsByAPI[apiPath, default: 0] }

    /// The number of business calls served for `sellerID`.
    public func businessCalls(forSeller sellerID: String) -> Int { businessCallsBySeller[sellerID, default: 0] }

    /// All injected faults together.
    public var totalFaults: Int { faults.values.reduce(0, +) }
}

/// What one seller has seen.
public struct SellerStats: Sendable, Equatable {
    /// `/auth/token/refresh` calls that carried one of this seller's refresh tokens.
    public var refreshRequests = 0
    /// Successful rotations.
    public var rotations = 0
    /// Refresh calls answered `IllegalRefreshToken`.
    public var rejectedRefreshes = 0
    /// Rotated refresh tokens presented again (client bugs only).
    public var refreshTokenReuses = 0
    /// Refreshes that arrived while another one for this seller was in flight.
    public var overlappingRefreshes = 0
    /// Authorization codes exchanged.
    public var codeExchanges = 0

    public init() {}
}
