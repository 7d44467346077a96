public import TokenKeeperCore

/// A scriptable ``TokenGateway`` that rotates refresh tokens as the real one
/// does (a used refresh token dies) and checks the invariants the scheduler
/// must keep: every token it is sent is the one stored, and none is sent twice.
///
/// One serves one app, as a real client holds one app's key and secret: a
/// refresh token of another app's seller sent here is not live, and counts
/// as a violation.
public actor FakeTokenGateway: TokenGateway {
    /// What one call does.
    public enum Step: Sendable {
        /// Rotates the pair.
        case succeed
        /// Says `refresh_expires_in` 0 and leaves the refresh token out: the
        /// last grant. The token sent is dead afterwards.
        case succeedFinal
        /// Rotates the pair, then lets the test make the answer odd.
        case succeedOddly(@Sendable (inout TokenGrant) -> Void)
        case fail(GatewayFailure)
        /// Fails without the gateway's state changing (a rejection that was a
        /// glitch: the refresh token still works afterwards).
        case glitch(GatewayFailure)
        /// Waits until the test releases the call with another step.
        case hold
    }

    public struct Call: Sendable {
        public var account: AccountKey
        public var at: Timestamp

        public var sellerID: String { account.sellerID }
    }

    /// The app whose key and secret this gateway stands for.
    public let app: AppName
    private let clock: any WallClock
    /// Whether a refresh token is the one the store holds for its account:
    /// the gateway checks that every token it is sent was made durable first.
    private let isStored: @Sendable (_ account: AccountKey, _ token: Secret) async -> Bool
    public var accessTokenLifetime: Duration = .seconds(3600)
    public var refreshTokenLifetime: Duration = .seconds(30 * 86_400)
    /// A `Date` header this far from our clock (nil: none).
    public var gatewayClockOffset: Duration?
    private var defaultStep: Step = .succeed
    private var scripts: [AccountKey: [Step]] = [:]
    private var live: [String: AccountKey] = [:]  // refresh token → account
    private var generation = 0
    private var held: [(account: AccountKey, continuation: CheckedContinuation<Step, Never>)] = []
    public private(set) var calls: [Call] = []
    public private(set) var inFlight = 0
    /// Calls in flight per seller: two at once for one seller is a violation
    /// (the second would send a refresh token the first is rotating).
    private var inFlightBySeller: [AccountKey: Int] = [:]
    public private(set) var maxInFlight = 0
    /// Broken invariants, described; a test expects none.
    public private(set) var violations: [String] = []

    public init(
        app: AppName = .default, clock: any WallClock,
        isStored: @escaping @Sendable (_ account: AccountKey, _ token: Secret) async -> Bool
    ) {
        self.app = app
        self.clock = clock
        self.isStored = isStored
    }

    /// Makes `token` a live refresh token of `account`, a seller of this gateway's app.
    public func register(_ account: AccountKey, refreshToken token: Secret) {
        if account.app != app {
            violations.append("\(account) registered with the gateway of app \(app)")
        }
        live[token.exposedValue] = account
    }

    public func setDefault(_ step: Step) {
        defaultStep = step
    }

    public func script(_ account: AccountKey, _ steps: Step...) {
        scripts[account, default: []].append(contentsOf: steps)
    }

    /// The life of the access tokens it grants from now on.
    public func setAccessTokenLifetime(_ lifetime: Duration) {
        accessTokenLifetime = lifetime
    }

    public func setGatewayClockOffset(_ offset: Duration?) {
        gatewayClockOffset = offset
    }

    public func calls(for account: AccountKey) -> Int {
        calls.filter { $0.account == account }.count
    }

    public var heldCount: Int { held.count }
    public var heldSellers: [AccountKey] { held.map(\.account) }

    /// Lets the oldest held call (or the one of `account`) go on with `step`.
    public func release(_ account: AccountKey? = nil, with step: Step = .succeed) {
        guard let index = held.firstIndex(where: { account == nil || $0.account == account }) else { return }
        held.remove(at: index).continuation.resume(returning: step)
    }

    public func refresh(refreshToken: Secret) async throws(GatewayFailure) -> TokenGrant {
        guard let account = live[refreshToken.exposedValue] else {
            violations.append(
                "a refresh token that is not live at app \(app)'s gateway was sent (reused, never issued, or "
                    + "another app's): \(refreshToken)")
            throw GatewayFailure(.accountRejected, code: "IllegalRefreshToken", message: "Illegal Refresh Token")
        }
        calls.append(Call(account: account, at: clock.now()))
        inFlight += 1
        inFlightBySeller[account, default: 0] += 1
        if inFlightBySeller[account]! > 1 {
            violations.append("seller \(account): two refreshes in flight at once")
        }
        maxInFlight = max(maxInFlight, inFlight)
        defer {
            inFlight -= 1
            inFlightBySeller[account]! -= 1
        }
        if await !isStored(account, refreshToken) {
            violations.append("seller \(account): sent a refresh token that is not the stored one")
        }

        var step = scripts[account]?.isEmpty == false ? scripts[account]!.removeFirst() : defaultStep
        while case .hold = step {
            step = await withCheckedContinuation { held.append((account, $0)) }
        }
        switch step {
        case .succeed, .succeedFinal, .succeedOddly:
            let sent = refreshToken
            let final = if case .succeedFinal = step { true } else { false }
            // The gateway rotates: the token just used is dead.
            live[refreshToken.exposedValue] = nil
            generation += 1
            let now = clock.now()
            // Named after the account (`rt-SELLER-g1` for the default app,
            // `rt-APP/SELLER-g1` otherwise): two apps' gateways count their
            // generations apart, and their tokens must still differ.
            let refreshToken = Secret("rt-\(account)-g\(generation)")
            if !final { live[refreshToken.exposedValue] = account }
            var grant = TokenGrant(
                sellerID: account.sellerID, profile: SellerProfile(userNick: "nick-\(account.sellerID)"),
                accessToken: Secret("at-\(account)-g\(generation)"), refreshToken: final ? nil : refreshToken,
                accessTokenLifetime: accessTokenLifetime,
                refreshTokenLifetime: final ? .zero : refreshTokenLifetime,
                expireTime: now + accessTokenLifetime,
                refreshTokenValidTime: final ? now : now + refreshTokenLifetime, receivedAt: now,
                requestID: "req-\(generation)", gatewayDate: gatewayClockOffset.map { now + $0 })
            if case .succeedOddly(let change) = step {
                change(&grant)
                // An answer without a refresh token did not rotate: the one
                // sent stays live (unless the answer is final).
                if grant.refreshToken == nil {
                    live[refreshToken.exposedValue] = nil
                    if !grant.isFinalGrant { live[sent.exposedValue] = account }
                }
            }
            return grant
        case .fail(let failure):
            if failure.failureClass == .accountRejected { live[refreshToken.exposedValue] = nil }
            throw failure
        case .glitch(let failure):
            throw failure
        case .hold:
            fatalError("unreachable")
        }
    }

    public func createToken(code: String) async throws(GatewayFailure) -> TokenGrant {
        throw GatewayFailure(.configuration, code: "Unsupported", message: "not used by the scheduler")
    }
}

extension GatewayFailure {
    public static let illegalRefreshToken = GatewayFailure(
        .accountRejected, code: "IllegalRefreshToken", message: "Illegal Refresh Token", requestID: "req-dead")
    public static let badSignature = GatewayFailure(
        .configuration, code: "IncompleteSignature", message: "The request signature does not conform",
        requestID: "req-sig")
    public static let serviceUnavailable = GatewayFailure(
        .transient, code: "HTTP503", message: "Service Unavailable", httpStatus: 503)
    public static func throttled(seconds: Int64) -> GatewayFailure {
        GatewayFailure(
            .throttled(retryAfter: .seconds(seconds)), code: "ApiCallLimit",
            message: "ban will last \(seconds) seconds", requestID: "req-limit")
    }
}
