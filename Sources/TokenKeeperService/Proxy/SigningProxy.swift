import Foundation
import IOPGateway
import Logging
import RefreshScheduler
import Synchronization
import TokenKeeperCore
import TokenKeeperHTTP

/// The signing proxy (docs/PROXY.md): a reader signs a call with its own
/// key and secret, exactly as the vendor's SDKs sign for an app, and puts
/// the seller id where the access token would go; the proxy checks the
/// signature and the timestamp, what the client may call for, and the
/// app's budget, then swaps in the app's key, the seller's current access
/// token, a fresh timestamp and the app's signature, forwards the call and
/// hands the gateway's answer back as it came.
///
/// The app secret and the access tokens never leave the daemon; a client's
/// key can be revoked alone (a reload); refreshes keep their share of the
/// app's call rate (``CallBudgets``).
final class SigningProxy: Sendable {
    /// The system parameters a client's request carries that the proxy replaces.
    static let clientSystemParameters: Set<String> = [
        "app_key", "sign", "sign_method", "timestamp", "access_token", "session",
    ]
    /// How far a client's timestamp may be from the daemon's clock (the gateway's rule).
    static let timestampTolerance: Duration = .seconds(600)
    /// A seller's access token is refreshed for a refused call at most this often.
    static let forcedRefreshInterval: Duration = .seconds(60)
    /// How long a call waits for the app's budget before it is refused.
    static let budgetWait: Duration = .seconds(1)

    struct Dependencies: Sendable {
        var store: any ManagedAccountStore
        var clients: ProxyClients
        var apps: ProxyApps
        var budgets: CallBudgets
        /// An app's call rate on this node now (nil: unlimited).
        var rate: @Sendable (AppName) -> Double?
        var daily: ProxyDailyCalls?
        /// Refreshes one seller now through the scheduler (one refresh at a time per seller).
        var refresh: @Sendable (AccountKey) async -> RefreshOutcome
        var forwarder: ProxyForwarder
        var clock: any WallClock
        var metrics: DaemonMetrics?
        var logger: Logger
    }

    private let dependencies: Dependencies
    /// The refresh each seller was last given for a refused token.
    private struct ForcedRefresh {
        /// The refused access token's fingerprint.
        var token: String
        var at: Timestamp
        var task: Task<Void, Never>
    }
    private let forcedRefreshes = Mutex<[AccountKey: ForcedRefresh]>([:])

    init(_ dependencies: Dependencies) {
        self.dependencies = dependencies
    }

    /// Answers one request.
    func handle(_ request: ForwardedRequest) async -> ForwardedReply {
        let started = ContinuousClock.now
        let requestID = Self.newRequestID()
        var context = CallContext()
        let reply: ForwardedReply
        do {
            let answer = try await forward(request, requestID: requestID, context: &context)
            reply = answer.reply
            dependencies.metrics?.proxyCall(
                client: context.client ?? "", app: context.app,
                outcome: answer.code == nil ? "forwarded" : "gateway_error",
                duration: ContinuousClock.now - started)
        } catch {
            reply = error.reply(requestID: requestID)
            dependencies.metrics?.proxyCall(
                client: context.client ?? "", app: context.app, outcome: error.outcome, duration: nil)
            var metadata: Logger.Metadata = [
                "reason": "\(error.outcome)", "code": "\(error.code)", "request_id": "\(requestID)",
                "path": "\(Self.shown(request.path))",
            ]
            if let client = context.client { metadata["client"] = "\(client)" }
            if let app = context.app { metadata["app"] = "\(app)" }
            if let seller = context.seller { metadata["seller"] = "\(seller)" }
            dependencies.logger.notice("proxy refused a call", metadata: metadata)
        }
        return reply
    }

    /// What is known of a call so far, for its metric and log line. The
    /// seller is named only once tokenkeeper has found it: what a client
    /// puts where the seller id goes may be an access token (a reader
    /// half-way moved to the proxy), and is never logged before.
    private struct CallContext {
        var client: String?
        var app: AppName?
        var seller: String?
    }

    private func forward(_ request: ForwardedRequest, requestID: String, context: inout CallContext)
        async throws(ProxyRefusal) -> ProxyForwarder.Answer
    {
        // One deadline for the whole call, the retry after a refresh included.
        let deadline = ContinuousClock.now + dependencies.forwarder.timeout
        guard let route = ProxyRoute(path: request.path) else { throw .notFound }
        guard request.method == "GET" || request.method == "POST" else { throw .notFound }
        let form: IOPForm
        do {
            form = try IOPForm.decode(query: request.query[...], contentType: request.contentType, body: request.body)
        } catch {
            throw .badForm
        }
        let parameters = form.parameters
        guard let key = parameters["app_key"], !key.isEmpty else { throw .missingAppKey }
        guard let client = dependencies.clients.client(key: key) else { throw .unknownClient }
        context.client = client.name
        let now = dependencies.clock.now()
        try Self.checkSignature(parameters, route: route, secret: client.secret, now: now)
        // The token APIs hand out tokens: never through the proxy.
        switch route.style {
        case .rest(let api): if IOPAPIName.isTokenAPI(api) { throw .tokenAPI }
        case .sync: if IOPAPIName.isTokenAPI(parameters["method"] ?? "") { throw .tokenAPI }
        }
        let app = try client.app(named: route.app, configured: dependencies.apps.names).get()
        context.app = app
        let sellerParameter =
            parameters["session"] != nil && parameters["access_token"] == nil ? "session" : "access_token"
        guard let sellerID = parameters[sellerParameter], !sellerID.isEmpty else {
            throw .missingSeller(sellerParameter)
        }
        guard client.sellers?.contains(sellerID) ?? true else { throw .sellerNotAllowed }
        guard let target = dependencies.apps.app(app) else { throw .unknownApp(app.rawValue) }
        // What costs nothing first: the client's own rate and the day's
        // count before the store is read and the app's budget is spent.
        if let rate = client.rate, !rate.tryTake() { throw .clientRate }
        if let daily = dependencies.daily, !daily.hasRoom(app, now: now) { throw .dailyCalls }
        var account = try await readAccount(AccountKey(app: app, sellerID: sellerID), context: &context)
        let country = Self.country(of: account, sellerID: sellerID)
        guard let base = target.settings.apiURL(country: country) else { throw .noAPIURL(country: country) }
        try await takeBudget(app, deadline: deadline)
        if let daily = dependencies.daily, !daily.admit(app, now: dependencies.clock.now()) { throw .dailyCalls }

        let call = Call(
            form: form, route: route, target: target, base: base, tokenParameter: sellerParameter,
            method: request.method)
        var answer = try await send(call, account: account, deadline: deadline)
        guard answer.code == "IllegalAccessToken" else {
            noteThrottling(answer, app: app)
            return answer
        }
        // The gateway refused the token before the call ran: have the seller
        // refreshed (or take the token another refresh brought meanwhile) and
        // retry once, within the call's deadline.
        guard let renewed = await renewedAccount(after: account, deadline: deadline) else {
            dependencies.metrics?.proxyTokenRetry(app: app, result: "unchanged")
            return answer
        }
        account = renewed
        try await takeBudget(app, deadline: deadline)
        answer = try await send(call, account: account, deadline: deadline)
        dependencies.metrics?.proxyTokenRetry(
            app: app, result: answer.code == "IllegalAccessToken" ? "refused_again" : "ok")
        noteThrottling(answer, app: app)
        return answer
    }

    /// A request the listener refused before reading it (too large, too
    /// many at once): counted and logged like the other refusals.
    func refuseBeforeReading(_ refusal: ProxyRefusal, path: String) -> ForwardedReply {
        let requestID = Self.newRequestID()
        dependencies.metrics?.proxyCall(client: "", app: nil, outcome: refusal.outcome, duration: nil)
        dependencies.logger.notice(
            "proxy refused a call",
            metadata: [
                "reason": "\(refusal.outcome)", "code": "\(refusal.code)", "request_id": "\(requestID)",
                "path": "\(Self.shown(path))",
            ])
        return refusal.reply(requestID: requestID)
    }

    // MARK: - Checks

    static func checkSignature(
        _ parameters: [String: String], route: ProxyRoute, secret: Secret, now: Timestamp
    ) throws(ProxyRefusal) {
        guard parameters["sign_method"]?.lowercased() == "sha256" else { throw .signMethod }
        guard let signature = parameters["sign"], !signature.isEmpty else { throw .badSignature }
        guard let text = parameters["timestamp"], let millis = Int64(text) else {
            throw .staleTimestamp(toleranceSeconds: timestampTolerance.components.seconds)
        }
        let skew = Timestamp(millisecondsSince1970: millis) - now
        guard skew <= timestampTolerance, skew >= .zero - timestampTolerance else {
            throw .staleTimestamp(toleranceSeconds: timestampTolerance.components.seconds)
        }
        // The SDKs differ on empty values (Java skips them, Python signs the
        // bare key): either way the secret's holder signed these parameters.
        let valid =
            IOPSignature.verify(
                signature: signature, apiPath: route.signedPath, parameters: parameters, secret: secret.exposedValue)
            || IOPSignature.verify(
                signature: signature, apiPath: route.signedPath, parameters: parameters, secret: secret.exposedValue,
                includingEmptyValues: true)
        guard valid else { throw .badSignature }
    }

    /// The account serving `key`'s seller: keyed by it, or (one of a Lazada
    /// account's sellers by country) listing it.
    private func readAccount(_ key: AccountKey, context: inout CallContext) async throws(ProxyRefusal) -> Account {
        let account: Account?
        do {
            if let keyed = try await dependencies.store.account(key) {
                account = keyed
            } else if let serving = try await dependencies.store.accountKey(app: key.app, servingSeller: key.sellerID) {
                account = try await dependencies.store.account(serving)
            } else {
                account = nil
            }
        } catch {
            dependencies.logger.warning("proxy cannot read the store", metadata: ["error": "\(error)"])
            throw .storeUnavailable
        }
        guard let account else { throw .sellerNotFound }
        context.seller = key.sellerID
        guard account.status == .active else {
            throw .sellerNotActive(status: account.status.rawValue, reason: account.statusReason)
        }
        guard account.hasUsableAccessToken(at: dependencies.clock.now()) else { throw .noAccessToken }
        return account
    }

    /// The country whose endpoint serves `sellerID` of `account`: its
    /// venture's (a Lazada cross-border account, `country` "cb", lists one
    /// seller per country), else the account's own.
    static func country(of account: Account, sellerID: String) -> String? {
        let ventures = account.profile.ventures
        return ventures.first { $0.sellerID == sellerID }?.country ?? account.profile.country ?? ventures.first?.country
    }

    /// Waits up to ``budgetWait`` (and no later than the call's deadline)
    /// for one call of the app's budget; refused when it would take longer,
    /// or while the gateway throttles the app.
    private func takeBudget(_ app: AppName, deadline: ContinuousClock.Instant) async throws(ProxyRefusal) {
        let waitUntil = dependencies.clock.now() + min(Self.budgetWait, max(deadline - .now, .zero))
        while true {
            let now = dependencies.clock.now()
            if let pausedUntil = dependencies.budgets.proxiedPause(app, now: now) {
                throw .appRate(seconds: (pausedUntil - now).components.seconds + 1)
            }
            switch dependencies.budgets.tryTakeProxied(app, rate: dependencies.rate(app), now: now) {
            case .granted:
                return
            case .notBefore(let moment):
                guard moment <= waitUntil else { throw .appRate(seconds: (moment - now).components.seconds + 1) }
                try? await Task.sleep(for: max(moment - now, .milliseconds(1)))
            }
        }
    }

    /// A throttling answer to any proxied call pauses the app's proxied
    /// calls for the ban it names (a 429's `Retry-After`), at least a second.
    private func noteThrottling(_ answer: ProxyForwarder.Answer, app: AppName) {
        let code = answer.code ?? "HTTP\(answer.status)"
        guard IOPFailureClassifier.throttlingCodes.contains(code) || answer.status == 429 else { return }
        let retryAfter = answer.reply.headers.first { $0.name.lowercased() == "retry-after" }
            .flatMap { Int64($0.value.trimmingCharacters(in: .whitespaces)) }.map { Duration.seconds(min($0, 86_400)) }
        let ban = max(
            retryAfter ?? IOPFailureClassifier.banDuration(in: answer.message ?? ""), IOPFailureClassifier.defaultBan)
        dependencies.budgets.pauseProxied(app, until: dependencies.clock.now() + ban)
        dependencies.logger.warning(
            "the gateway throttles this app: proxied calls paused",
            metadata: ["app": "\(app)", "code": "\(code)", "seconds": "\(ban.components.seconds)"])
    }

    // MARK: - Refresh on a refused token

    /// The account with an access token other than the one the gateway just
    /// refused: one another refresh stored meanwhile, or one refreshed now
    /// through the scheduler. Every call refused with the same token waits
    /// for the one refresh it started (for ``forcedRefreshInterval``: a
    /// refresh that brought no working token is not asked for again and
    /// again); nil when no new token comes by the call's deadline.
    private func renewedAccount(after refused: Account, deadline: ContinuousClock.Instant) async -> Account? {
        let key = refused.key
        if let current = await currentAccount(key, other: refused.accessToken) { return current }
        let now = dependencies.clock.now()
        let token = refused.accessToken?.fingerprint ?? ""
        let refresh = dependencies.refresh
        let logger = dependencies.logger
        let task = forcedRefreshes.withLock { started -> Task<Void, Never> in
            if let entry = started[key], entry.token == token, now - entry.at < Self.forcedRefreshInterval,
                now >= entry.at
            {
                return entry.task
            }
            logger.notice(
                "the gateway refused a seller's access token for a proxied call: refreshing it",
                metadata: ["app": "\(key.app)", "seller": "\(key.sellerID)"])
            let task = Task { _ = await refresh(key) }
            // Entries whose interval is over matter no more: the map holds only recent ones.
            started = started.filter { now - $0.value.at < Self.forcedRefreshInterval && now >= $0.value.at }
            started[key] = ForcedRefresh(token: token, at: now, task: task)
            return task
        }
        guard await Bounded.within(max(deadline - .now, .zero), { await task.value }) else { return nil }
        return await currentAccount(key, other: refused.accessToken)
    }

    /// The stored account if its access token is usable and not `other`.
    private func currentAccount(_ key: AccountKey, other: Secret?) async -> Account? {
        guard let current = try? await dependencies.store.account(key), current.accessToken != other,
            current.hasUsableAccessToken(at: dependencies.clock.now())
        else { return nil }
        return current
    }

    // MARK: - Forwarding

    /// What is forwarded, whatever the token.
    private struct Call: Sendable {
        var form: IOPForm
        var route: ProxyRoute
        var target: ProxyApp
        /// The app's REST endpoint for the seller's country.
        var base: String
        /// `access_token` (lazop SDKs) or `session` (iop SDKs): where the seller id came, where the token goes.
        var tokenParameter: String
        var method: String
    }

    private func send(_ call: Call, account: Account, deadline: ContinuousClock.Instant) async throws(ProxyRefusal)
        -> ProxyForwarder.Answer
    {
        guard let token = account.accessToken else { throw .noAccessToken }
        let (route, target, base, tokenParameter) = (call.route, call.target, call.base, call.tokenParameter)
        var outgoing = call.form
        outgoing.removeFields(named: Self.clientSystemParameters)
        // Empty values are dropped: the SDKs disagree on signing them.
        outgoing.fields = Self.firstOfEach(outgoing.fields.filter { !$0.value.isEmpty })
        outgoing.setField("app_key", target.key)
        outgoing.setField(tokenParameter, token.exposedValue)
        outgoing.setField("timestamp", String(dependencies.clock.now().millisecondsSince1970))
        outgoing.setField("sign_method", "sha256")
        outgoing.setField(
            "sign",
            IOPSignature.sign(
                apiPath: route.signedPath, parameters: outgoing.parameters, secret: target.secret.exposedValue))
        let url: String
        switch route.style {
        case .rest(let api): url = base + api
        case .sync: url = (base.hasSuffix("/rest") ? String(base.dropLast(5)) : base) + "/sync"
        }
        do {
            return try await dependencies.forwarder.send(outgoing, to: url, method: call.method, deadline: deadline)
        } catch {
            throw .gatewayUnreachable(error.description)
        }
    }

    /// The first field of each name, in order.
    static func firstOfEach(_ fields: [IOPForm.Field]) -> [IOPForm.Field] {
        var seen = Set<String>()
        return fields.filter { seen.insert($0.name).inserted }
    }

    /// A path as logged: at most 200 characters (the log handler escapes
    /// what it holds).
    static func shown(_ path: String) -> String {
        path.utf8.count <= 200 ? path : String(path.prefix(200)) + "…"
    }

    static func newRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        return "tk" + String(decoding: (0..<14).map { _ in digits[Int(generator.next() % 16)] }, as: UTF8.self)
    }
}
