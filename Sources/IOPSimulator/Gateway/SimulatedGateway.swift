import IOPGateway
import Logging
import TokenKeeperCore

/// The simulated gateway's whole state and rules, free of I/O: the HTTP layer
/// hands it a ``GatewayRequest`` and gets back what to answer. It lives inside
/// one lock (``SimulatorCore``), so every request sees and changes it atomically.
///
/// Under the base path, `/auth/token/create` and `/auth/token/refresh` are the
/// token APIs, any other `/auth/…` path is unknown, and every other path is a
/// business API (`SimulatedGateway+BusinessAPI.swift`), as is every call to
/// `/sync`, which names its API in `method`.
struct SimulatedGateway {
    static let createPath = "/auth/token/create"
    static let refreshPath = "/auth/token/refresh"
    static let signMethod = "sha256"

    private enum RefreshTokenState {
        case current
        /// Rotated; `answerLost` when a ``FaultKind/resetAfterRotation`` swallowed the answer.
        case rotated(answerLost: Bool)
        case revoked
        /// Replaced by a new authorization (`/auth/token/create` or a seed).
        case superseded
    }

    private struct RefreshTokenRecord {
        var seller: SellerRef
        var state: RefreshTokenState
    }

    struct AccessTokenRecord {
        var seller: SellerRef
        var expireTime: Timestamp
    }

    private struct CodeRecord {
        var seller: SellerRef
        var expiresAt: Timestamp
        var used: Bool
    }

    struct SellerRecord {
        var seller: SimulatedSeller
        var currentRefreshToken: String?
        /// The only access token business calls accept for the seller: the
        /// one issued last, until ``SimulatedGateway/invalidateAccessToken(_:)``.
        var currentAccessToken: String?
        var refreshTokenValidTime: Timestamp?
        /// When the access token issued last expires.
        var accessTokenExpireTime: Timestamp?
        var inFlightRefreshes = 0
        var stats = SellerStats()
        var issued: [IssuedTokenPair] = []
    }

    var behavior: GatewayBehavior
    /// Every request's counts.
    var counters = SimulatorCounters()
    /// The same counts, for the requests of each app key the gateway knew.
    var countersByApp: [String: SimulatorCounters] = [:]
    private(set) var sellers: [SellerRef: SellerRecord] = [:]
    /// The app keys of the sellers registered under one, by seller id: how
    /// the Swift API finds such a seller when no app key is given.
    private var appKeysBySellerID: [String: [String]] = [:]
    /// Refreshes being answered, every seller's together (the peak is a counter).
    private var refreshesInFlight = 0
    private var refreshesInFlightByApp: [String: Int] = [:]
    private let clock: any WallClock
    private let basePath: String
    /// `/sync` beside the base path (`/rest`), as on the real gateway's host.
    private let syncPath: String
    let logger: Logger
    private let answerShape: AnswerShape
    private let answerShapesByApp: [String: AnswerShape]
    private var refreshTokens: [String: RefreshTokenRecord] = [:]
    private(set) var accessTokens: [String: AccessTokenRecord] = [:]
    private var codes: [String: CodeRecord] = [:]
    /// Scripted faults in order; each for the next request of its app, or of any app (nil).
    private var scriptedFaults: [(kind: FaultKind, appKey: String?)] = []
    /// Throttling bans by the app key they hit (`""` for requests of no known app):
    /// the real gateway limits calls per app.
    private var bans: [String: Timestamp] = [:]
    private var random: SeededRandom
    private var serial: UInt64 = 0

    init(configuration: SimulatorConfiguration) {
        behavior = configuration.behavior
        clock = configuration.clock
        basePath = configuration.basePath
        syncPath = SimulatorAddress.syncPath(basePath: configuration.basePath)
        logger = configuration.logger
        answerShape = configuration.answerShape
        answerShapesByApp = configuration.answerShapesByApp
        random = SeededRandom(seed: configuration.randomSeed)
    }

    /// Counts in the gateway's counters and in those of the request's app.
    mutating func count(_ appKey: String?, _ change: (inout SimulatorCounters) -> Void) {
        change(&counters)
        if let appKey { change(&countersByApp[appKey, default: SimulatorCounters()]) }
    }

    mutating func resetCounters() {
        counters = SimulatorCounters()
        countersByApp.removeAll()
    }

    var now: Timestamp { clock.now() }

    // MARK: - Requests

    /// Decides the answer to one request and applies its effect.
    mutating func answer(_ request: GatewayRequest) -> GatewayAnswer {
        let now = clock.now()
        serial += 1
        var ticket = RequestTicket(number: serial)
        // The app a request is counted for: the key it names (`client_id` on
        // the authorization page), when the gateway knows it.
        let namedKey = request.parameters[request.path == Self.authorizePagePath ? "client_id" : "app_key"]
        ticket.appKey = namedKey.flatMap { behavior.apps[$0] == nil ? nil : $0 }
        let app = ticket.appKey
        count(app) { $0.requests += 1 }

        if request.path == Self.authorizePagePath {
            count(app) { $0.requestsByAPI[request.path, default: 0] += 1 }
            return authorizePage(request, now: now, ticket: ticket)
        }
        let isSync = request.path == syncPath
        guard isSync || request.path.hasPrefix(basePath + "/") else {
            count(app) { $0.requestsByAPI[request.path, default: 0] += 1 }
            return plainStatus(404, "Not Found", now: now, ticket: ticket)
        }
        // On `/sync` the API is the `method` parameter (counted under the path when missing).
        let api = isSync ? request.parameters["method"] ?? "" : String(request.path.dropFirst(basePath.count))
        count(app) { $0.requestsByAPI[api.isEmpty ? request.path : api, default: 0] += 1 }
        guard request.method == "GET" || request.method == "POST" else {
            return plainStatus(405, "Not Allowed", now: now, ticket: ticket)
        }
        guard !request.bodyTooLarge else {
            return plainStatus(413, "Request Entity Too Large", now: now, ticket: ticket)
        }
        if let formError = request.formError {
            logger.debug("unreadable body", metadata: ["api": "\(api)", "reason": "\(formError)"])
            return refusal(.unreadableBody(formError), status: 400, now: now, ticket: ticket)
        }

        // A refresh is "in flight" for its seller from arrival until its answer
        // is written or abandoned; a second one arriving meanwhile is an overlap.
        if !isSync, api == Self.refreshPath, let token = request.parameters["refresh_token"],
            let sellerKey = refreshTokens[token]?.seller, sellers[sellerKey] != nil
        {
            sellers[sellerKey]!.stats.refreshRequests += 1
            if sellers[sellerKey]!.inFlightRefreshes > 0 {
                count(app) { $0.overlappingRefreshes += 1 }
                sellers[sellerKey]!.stats.overlappingRefreshes += 1
                logger.warning("overlapping refresh", metadata: ["seller": "\(sellerKey)"])
            }
            sellers[sellerKey]!.inFlightRefreshes += 1
            refreshesInFlight += 1
            counters.peakConcurrentRefreshes = max(counters.peakConcurrentRefreshes, refreshesInFlight)
            if let app {
                refreshesInFlightByApp[app, default: 0] += 1
                let peak = max(countersByApp[app]?.peakConcurrentRefreshes ?? 0, refreshesInFlightByApp[app]!)
                countersByApp[app, default: SimulatorCounters()].peakConcurrentRefreshes = peak
            }
            if let expiry = sellers[sellerKey]!.accessTokenExpireTime, now >= expiry {
                count(app) { $0.refreshesAfterAccessExpiry += 1 }
            }
            ticket.inFlightSeller = sellerKey
        }

        if behavior.enforcesThrottleBan, let banUntil = bans[app ?? ""], now < banUntil {
            count(app) { $0.callsDuringBan += 1 }
            let seconds = Int((banUntil - now).wholeMilliseconds + 999) / 1000
            return refusal(.apiCallLimit(banSeconds: max(seconds, 1)), now: now, ticket: ticket)
        }

        let fault = nextFault(for: app)
        if let fault, !fault.consumesRequest {
            return faultAnswer(fault, now: now, ticket: ticket)
        }
        if isSync || Self.isBusinessAPI(api) {
            return businessCall(request, api: api, isSync: isSync, fault: fault, now: now, ticket: ticket)
        }

        let outcome: Result<IssuedReference, GatewayError>
        switch api {
        case Self.createPath, Self.refreshPath:
            if let error = checkSystemParameters(request.parameters, signedPath: api, now: now) {
                outcome = .failure(error)
            } else if api == Self.createPath {
                outcome = exchangeCode(request.parameters["code"], appKey: app, now: now)
            } else {
                outcome = rotate(request.parameters["refresh_token"], appKey: app, now: now)
            }
        default:
            outcome = .failure(.invalidApiPath)
        }

        switch outcome {
        case .failure(let error):
            if error.code == GatewayError.illegalRefreshToken.code, let seller = ticket.inFlightSeller {
                sellers[seller]?.stats.rejectedRefreshes += 1
            }
            logger.debug("refused", metadata: ["api": "\(api)", "code": "\(error.code)"])
            return refusal(error, now: now, ticket: ticket)
        case .success(let reference):
            count(app) { $0.successes[api, default: 0] += 1 }
            let pair = sellers[reference.sellerKey]!.issued[reference.index]
            defer { if !behavior.recordsIssuedTokens { sellers[reference.sellerKey]!.issued.removeAll() } }
            if fault == .resetAfterRotation {
                count(app) { $0.faults[.resetAfterRotation, default: 0] += 1 }
                sellers[reference.sellerKey]!.issued[reference.index].delivery = .lostByFault
                if api == Self.refreshPath, let sent = request.parameters["refresh_token"] {
                    refreshTokens[sent]?.state = .rotated(answerLost: true)
                }
                logger.debug("answer lost after rotation", metadata: ["seller": "\(reference.sellerKey)"])
                return GatewayAnswer(action: .reset, date: IMFDate.format(now), delay: .zero, ticket: ticket)
            }
            ticket.carriesGrant = true
            if behavior.recordsIssuedTokens { ticket.issued = reference }
            logger.debug(
                "issued",
                metadata: [
                    "api": "\(api)", "seller": "\(reference.sellerKey)", "refresh_token": "\(pair.refreshToken)",
                ])
            return GatewayAnswer(
                action: .respond(
                    status: 200, contentType: "application/json;charset=UTF-8",
                    body: successBody(reference, shape: shape(for: app))),
                date: IMFDate.format(now), delay: behavior.responseLatency, ticket: ticket)
        }
    }

    /// Closes the bookkeeping of a request once its answer is written (or not).
    mutating func finish(_ ticket: RequestTicket, delivered: Bool) {
        if let seller = ticket.inFlightSeller, sellers[seller] != nil {
            sellers[seller]!.inFlightRefreshes = max(0, sellers[seller]!.inFlightRefreshes - 1)
            refreshesInFlight = max(0, refreshesInFlight - 1)
            if let app = ticket.appKey, let inFlight = refreshesInFlightByApp[app] {
                refreshesInFlightByApp[app] = inFlight > 1 ? inFlight - 1 : nil
            }
        }
        guard !delivered, ticket.carriesGrant else { return }
        count(ticket.appKey) { $0.answersNotDelivered += 1 }
        if let issued = ticket.issued, let record = sellers[issued.sellerKey], issued.index < record.issued.count {
            sellers[issued.sellerKey]!.issued[issued.index].delivery = .notDelivered
        }
    }

    private mutating func nextFault(for appKey: String?) -> FaultKind? {
        if let next = scriptedFaults.firstIndex(where: { $0.appKey == nil || $0.appKey == appKey }) {
            return scriptedFaults.remove(at: next).kind
        }
        guard !behavior.faults.probabilities.isEmpty else { return nil }
        return behavior.faults.pick(random.unit())
    }

    /// The protocol checks, in the order the gateway makes them: who is calling,
    /// how it signed, when, and whether the signature holds.
    /// - Parameters:
    ///   - signedPath: The API path the signature covers; `""` on `/sync`.
    ///   - acceptsSignedEmptyValues: Also accept a signature over the empty
    ///     values (the Python SDK's), not only one that leaves them out.
    func checkSystemParameters(
        _ parameters: [String: String], signedPath: String, now: Timestamp, acceptsSignedEmptyValues: Bool = false
    ) -> GatewayError? {
        guard let appKey = parameters["app_key"], !appKey.isEmpty else { return .missingAppKey }
        guard let secret = behavior.apps[appKey] else { return .invalidAppKey }
        guard let signMethod = parameters["sign_method"], !signMethod.isEmpty else {
            return .isv("IncompleteSignature", "The request has no sign_method")
        }
        guard signMethod.lowercased() == Self.signMethod else {
            return .isv("IncompleteSignature", "The sign_method \"\(signMethod)\" is not supported; use sha256")
        }
        guard let signature = parameters[IOPSignature.parameterName], !signature.isEmpty else {
            return .isv("IncompleteSignature", "The request has no signature")
        }
        guard let text = parameters["timestamp"], let millis = Int64(text) else {
            return .illegalTimestamp("the timestamp must be milliseconds since 1970")
        }
        let skew = Timestamp(millisecondsSince1970: millis) - now
        let tolerance = behavior.timestampTolerance
        guard skew <= tolerance, skew >= .zero - tolerance else {
            return .illegalTimestamp(
                "it differs from the gateway's time by more than \(tolerance.wholeMilliseconds / 1000) seconds")
        }
        let secretText = secret.exposedValue
        let verified =
            IOPSignature.verify(
                signature: signature, apiPath: signedPath, parameters: parameters, secret: secretText)
            || acceptsSignedEmptyValues && parameters.values.contains("")
                && IOPSignature.verify(
                    signature: signature, apiPath: signedPath, parameters: parameters, secret: secretText,
                    includingEmptyValues: true)
        return verified ? nil : .incompleteSignature
    }

    // MARK: - The two APIs

    /// `appKey` is the calling app's: a code or token of a seller registered
    /// under another app is not valid for it, as the real gateway issues
    /// each app its own.
    private mutating func exchangeCode(_ code: String?, appKey: String?, now: Timestamp)
        -> Result<IssuedReference, GatewayError>
    {
        guard let code, !code.isEmpty else { return .failure(.missingParameter("code")) }
        guard let record = codes[code], sellers[record.seller] != nil, record.seller.serves(appKey) else {
            return .failure(.invalidCode)
        }
        guard !record.used else {
            count(appKey) { $0.codeReuses += 1 }
            return .failure(.invalidCode)
        }
        guard now < record.expiresAt else { return .failure(.invalidCode) }
        codes[code]!.used = true
        count(appKey) { $0.codeExchanges += 1 }
        sellers[record.seller]!.stats.codeExchanges += 1
        return .success(authorize(record.seller, origin: .authorizationCode, now: now, requestID: requestID()))
    }

    private mutating func rotate(_ token: String?, appKey: String?, now: Timestamp)
        -> Result<IssuedReference, GatewayError>
    {
        guard let token, !token.isEmpty else { return .failure(.missingParameter("refresh_token")) }
        guard let record = refreshTokens[token], let seller = sellers[record.seller], record.seller.serves(appKey)
        else {
            return .failure(.illegalRefreshToken)
        }
        switch record.state {
        case .rotated(let answerLost):
            if answerLost {
                count(appKey) { $0.reusesAfterLostAnswer += 1 }
            } else {
                count(appKey) { $0.refreshTokenReuses += 1 }
                sellers[record.seller]!.stats.refreshTokenReuses += 1
                logger.warning(
                    "rotated refresh token used again",
                    metadata: ["seller": "\(record.seller)", "refresh_token": "\(Secret(token))"])
            }
            return .failure(.illegalRefreshToken)
        case .revoked, .superseded:
            return .failure(.illegalRefreshToken)
        case .current:
            break
        }
        // The validity was fixed at authorization; a rotation hands it on unchanged.
        guard let validTime = seller.refreshTokenValidTime, now < validTime else {
            return .failure(.illegalRefreshToken)
        }
        if behavior.rejectsAllRefreshTokens {
            count(appKey) { $0.massRejections += 1 }
            return .failure(.illegalRefreshToken)
        }
        refreshTokens[token]!.state = .rotated(answerLost: false)
        count(appKey) { $0.rotations += 1 }
        sellers[record.seller]!.stats.rotations += 1
        let reference = issuePair(
            for: record.seller, origin: .rotation, now: now, refreshTokenValidTime: validTime,
            requestID: requestID())
        switch behavior.quirks[record.seller.sellerID] {
        case .finalGrant:
            // The pair's refresh token is never handed out: it is dead from birth.
            let issued = sellers[record.seller]!.issued[reference.index]
            refreshTokens[issued.refreshToken.exposedValue]?.state = .revoked
            sellers[record.seller]!.currentRefreshToken = nil
            sellers[record.seller]!.issued[reference.index].refreshExpiresIn = .zero
            sellers[record.seller]!.issued[reference.index].isFinal = true
        case .zeroLifetime:
            sellers[record.seller]!.issued[reference.index].accessTokenLifetime = .zero
            sellers[record.seller]!.issued[reference.index].expireTime = now
            let accessToken = sellers[record.seller]!.issued[reference.index].accessToken.exposedValue
            accessTokens[accessToken]?.expireTime = now
            sellers[record.seller]!.accessTokenExpireTime = now
        case .securityShape, .userInfo, nil:
            break
        }
        return .success(reference)
    }

    // MARK: - Issuing

    /// Starts a new authorization for a seller: its previous refresh token is
    /// superseded and a new validity period begins.
    mutating func authorize(
        _ sellerKey: SellerRef, origin: IssuedTokenPair.Origin, now: Timestamp, requestID: String?
    ) -> IssuedReference {
        let seller = sellers[sellerKey]!
        if let old = seller.currentRefreshToken { refreshTokens[old]?.state = .superseded }
        let validity = seller.seller.refreshTokenValidity ?? behavior.refreshTokenValidity
        let validTime = now + validity
        sellers[sellerKey]!.refreshTokenValidTime = validTime
        return issuePair(
            for: sellerKey, origin: origin, now: now, refreshTokenValidTime: validTime, requestID: requestID)
    }

    private mutating func issuePair(
        for sellerKey: SellerRef, origin: IssuedTokenPair.Origin, now: Timestamp, refreshTokenValidTime: Timestamp,
        requestID: String?
    ) -> IssuedReference {
        let lifetime = sellers[sellerKey]!.seller.accessTokenLifetime ?? behavior.accessTokenLifetime
        let accessToken = newToken(prefix: "50000")
        let refreshToken = newToken(prefix: "50001")
        let remainingMilliseconds = max(0, (refreshTokenValidTime - now).wholeMilliseconds)
        let pair = IssuedTokenPair(
            sellerID: sellerKey.sellerID, appKey: sellerKey.appKey, origin: origin, accessToken: Secret(accessToken),
            refreshToken: Secret(refreshToken), issuedAt: now, accessTokenLifetime: lifetime,
            expireTime: now + lifetime, refreshTokenValidTime: refreshTokenValidTime,
            refreshExpiresIn: .seconds(remainingMilliseconds / 1000), requestID: requestID, delivery: .sent)
        refreshTokens[refreshToken] = RefreshTokenRecord(seller: sellerKey, state: .current)
        accessTokens[accessToken] = AccessTokenRecord(seller: sellerKey, expireTime: pair.expireTime)
        sellers[sellerKey]!.currentRefreshToken = refreshToken
        sellers[sellerKey]!.currentAccessToken = accessToken
        sellers[sellerKey]!.accessTokenExpireTime = pair.expireTime
        sellers[sellerKey]!.issued.append(pair)
        return IssuedReference(sellerKey: sellerKey, index: sellers[sellerKey]!.issued.count - 1)
    }

    // MARK: - The Swift API's operations

    mutating func addSeller(_ seller: SimulatedSeller) {
        let key = SellerRef(seller)
        if sellers[key] != nil {
            sellers[key]!.seller = seller
        } else {
            sellers[key] = SellerRecord(seller: seller)
            if let appKey = key.appKey { appKeysBySellerID[key.sellerID, default: []].append(appKey) }
        }
    }

    /// The seller a Swift API call means. With an app key: the seller
    /// registered under it, else the one open to every app. Without: the one
    /// open to every app, else the only one with this id under any app key.
    func sellerRef(_ sellerID: String, appKey: String?) throws(IOPSimulatorError) -> SellerRef {
        let open = SellerRef(appKey: nil, sellerID: sellerID)
        if let appKey {
            let scoped = SellerRef(appKey: appKey, sellerID: sellerID)
            if sellers[scoped] != nil { return scoped }
            if sellers[open] != nil { return open }
            throw .unknownSeller(sellerID)
        }
        if sellers[open] != nil { return open }
        let appKeys = appKeysBySellerID[sellerID] ?? []
        guard appKeys.count <= 1 else { throw .ambiguousSeller(sellerID, appKeys: appKeys.sorted()) }
        guard let only = appKeys.first else { throw .unknownSeller(sellerID) }
        return SellerRef(appKey: only, sellerID: sellerID)
    }

    /// The seller's record, or nil when unknown or ambiguous (for the queries that do not throw).
    func record(_ sellerID: String, appKey: String?) -> SellerRecord? {
        (try? sellerRef(sellerID, appKey: appKey)).flatMap { sellers[$0] }
    }

    mutating func issueAuthorizationCode(for sellerKey: SellerRef, validity: Duration?) -> String {
        serial += 1
        let code = "3_\(serial)_" + random.text(count: 25, from: Self.tokenAlphabet)
        codes[code] = CodeRecord(
            seller: sellerKey, expiresAt: clock.now() + (validity ?? behavior.authorizationCodeValidity), used: false)
        return code
    }

    mutating func seedTokens(for sellerKey: SellerRef, issuedAt: Timestamp?) -> IssuedTokenPair {
        let reference = authorize(sellerKey, origin: .seed, now: issuedAt ?? clock.now(), requestID: nil)
        let pair = sellers[sellerKey]!.issued[reference.index]
        if !behavior.recordsIssuedTokens { sellers[sellerKey]!.issued.removeAll() }
        return pair
    }

    mutating func revoke(_ sellerKey: SellerRef) {
        if let token = sellers[sellerKey]!.currentRefreshToken { refreshTokens[token]?.state = .revoked }
        sellers[sellerKey]!.currentRefreshToken = nil
    }

    /// The seller's current access token stops working for business calls
    /// (its refresh token is untouched): the next refresh issues one that works.
    mutating func invalidateAccessToken(_ sellerKey: SellerRef) {
        sellers[sellerKey]!.currentAccessToken = nil
    }

    mutating func setLifetimes(for sellerKey: SellerRef, accessToken: Duration?, refreshTokenValidity: Duration?) {
        sellers[sellerKey]!.seller.accessTokenLifetime = accessToken
        sellers[sellerKey]!.seller.refreshTokenValidity = refreshTokenValidity
    }

    mutating func injectFaults(_ kind: FaultKind, count: Int, appKey: String?) {
        scriptedFaults.append(contentsOf: repeatElement((kind: kind, appKey: appKey), count: max(0, count)))
    }

    mutating func clearFaults() {
        scriptedFaults.removeAll()
        behavior.faults = .none
        bans.removeAll()
    }

    func accessTokenStatus(_ token: String) -> AccessTokenStatus {
        guard let record = accessTokens[token] else { return .unknown }
        return clock.now() < record.expireTime
            ? .valid(sellerID: record.seller.sellerID, expireTime: record.expireTime)
            : .expired(sellerID: record.seller.sellerID, expireTime: record.expireTime)
    }

    // MARK: - Bodies

    private static let tokenAlphabet = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    private static let hexAlphabet = Array("0123456789abcdef".utf8)

    /// 60 characters like the vendor's sample; the serial at the end keeps every
    /// token unique whatever the generator draws.
    private mutating func newToken(prefix: String) -> String {
        serial += 1
        let serialText = String(serial, radix: 36)
        let fill = 60 - prefix.count - serialText.count
        return prefix + random.text(count: max(fill, 8), from: Self.tokenAlphabet) + serialText
    }

    mutating func requestID() -> String {
        "21" + random.text(count: 23, from: Self.hexAlphabet)
    }

    private mutating func numberAsString() -> Bool {
        switch behavior.numberEncoding {
        case .numbers: false
        case .strings: true
        case .mixed: random.coinFlip()
        }
    }

    /// The answer shape for a request of `appKey`.
    private func shape(for appKey: String?) -> AnswerShape {
        appKey.flatMap { answerShapesByApp[$0] } ?? answerShape
    }

    private mutating func successBody(_ reference: IssuedReference, shape: AnswerShape) -> [UInt8] {
        let record = sellers[reference.sellerKey]!
        let pair = record.issued[reference.index]
        let quirk = behavior.quirks[reference.sellerKey.sellerID]
        if pair.origin == .rotation, quirk == .securityShape {
            return securityShapeBody(pair)
        }
        return successBody(pair, seller: record.seller, shape: shape, quirk: quirk)
    }

    private mutating func successBody(
        _ pair: IssuedTokenPair, seller: SimulatedSeller, shape: AnswerShape, quirk: AnswerQuirk? = nil
    ) -> [UInt8] {
        switch shape {
        case .aliExpress: aliExpressBody(pair, seller: seller)
        case .lazada: lazadaBody(pair, seller: seller, listsUnderUserInfo: quirk == .userInfo)
        }
    }

    /// `"code":"0"`, or in ``NumberEncoding/mixed`` now and then the number 0.
    private mutating func writeSuccessCode(into json: inout JSONObjectWriter) {
        if behavior.numberEncoding == .mixed, random.coinFlip() {
            json.number("code", 0)
        } else {
            json.string("code", "0")
        }
    }

    /// `/auth/token/security/refresh`'s shape: tokens and lifetimes, no seller fields.
    private mutating func securityShapeBody(_ pair: IssuedTokenPair) -> [UInt8] {
        var json = JSONObjectWriter()
        json.string("code", "0")
        json.string("access_token", pair.accessToken.exposedValue)
        json.string("refresh_token", pair.refreshToken.exposedValue)
        json.number("expires_in", pair.accessTokenLifetime.wholeMilliseconds / 1000, asString: numberAsString())
        json.number("refresh_expires_in", pair.refreshExpiresIn.wholeMilliseconds / 1000, asString: numberAsString())
        json.number("expire_time", pair.expireTime.millisecondsSince1970, asString: numberAsString())
        json.number(
            "refresh_token_valid_time", pair.refreshTokenValidTime.millisecondsSince1970, asString: numberAsString())
        json.string("request_id", pair.requestID ?? requestID())
        return json.finished()
    }

    /// A success in the field order of the vendor's sample answer.
    private mutating func aliExpressBody(_ pair: IssuedTokenPair, seller: SimulatedSeller) -> [UInt8] {
        var json = JSONObjectWriter()
        json.number(
            "refresh_token_valid_time", pair.refreshTokenValidTime.millisecondsSince1970, asString: numberAsString())
        json.string("havana_id", seller.havanaID)
        writeSuccessCode(into: &json)
        json.number("expire_time", pair.expireTime.millisecondsSince1970, asString: numberAsString())
        json.string("locale", seller.locale)
        json.string("user_nick", seller.userNick)
        json.string("access_token", pair.accessToken.exposedValue)
        if !pair.isFinal { json.string("refresh_token", pair.refreshToken.exposedValue) }
        if let accountID = seller.accountID { json.string("account_id", accountID) } else { json.null("account_id") }
        json.string("user_id", seller.userID)
        json.string("account_platform", seller.accountPlatform)
        json.number("refresh_expires_in", pair.refreshExpiresIn.wholeMilliseconds / 1000, asString: numberAsString())
        json.number("expires_in", pair.accessTokenLifetime.wholeMilliseconds / 1000, asString: numberAsString())
        json.string("sp", seller.sp)
        json.string("request_id", pair.requestID ?? requestID())
        json.string("seller_id", seller.sellerID)
        json.string("account", seller.account)
        return json.finished()
    }

    /// Lazada's shape, in the field order of its answers: no seller fields at
    /// the top and no absolute times, but the account's `country` (`cb` for a
    /// cross-border one) and the sellers the token serves, one per country.
    private mutating func lazadaBody(_ pair: IssuedTokenPair, seller: SimulatedSeller, listsUnderUserInfo: Bool)
        -> [UInt8]
    {
        var json = JSONObjectWriter()
        writeSuccessCode(into: &json)
        json.string("access_token", pair.accessToken.exposedValue)
        if !pair.isFinal { json.string("refresh_token", pair.refreshToken.exposedValue) }
        json.number("expires_in", pair.accessTokenLifetime.wholeMilliseconds / 1000, asString: numberAsString())
        json.number("refresh_expires_in", pair.refreshExpiresIn.wholeMilliseconds / 1000, asString: numberAsString())
        json.string("account", seller.account)
        json.string("country", seller.lazadaCountry)
        json.string("account_platform", seller.accountPlatform)
        var entries: [JSONObjectWriter] = []
        for venture in seller.lazadaVentures {
            var entry = JSONObjectWriter()
            entry.string("country", venture.country)
            if let userID = venture.userID { identifier("user_id", userID, into: &entry) }
            identifier("seller_id", venture.sellerID, into: &entry)
            if let shortCode = venture.shortCode { entry.string("short_code", shortCode) }
            entries.append(entry)
        }
        if listsUnderUserInfo, entries.count == 1 {
            json.object("user_info", entries[0])
        } else {
            json.array(listsUnderUserInfo ? "user_info" : "country_user_info", entries)
        }
        json.string("request_id", pair.requestID ?? requestID())
        return json.finished()
    }

    /// An id as Lazada sends it: a numeric string or, where it reads back the
    /// same, a JSON number (drawn as ``NumberEncoding`` says).
    private mutating func identifier(_ key: String, _ value: String, into json: inout JSONObjectWriter) {
        if let number = Int64(value), String(number) == value, !numberAsString() {
            json.number(key, number)
        } else {
            json.string(key, value)
        }
    }

    /// The gateway's JSON error, with HTTP 200 as the gateway sends its
    /// refusals (400 for a body it cannot read).
    mutating func refusal(_ error: GatewayError, status: Int = 200, now: Timestamp, ticket: RequestTicket)
        -> GatewayAnswer
    {
        count(ticket.appKey) { $0.rejections[error.code, default: 0] += 1 }
        return GatewayAnswer(
            action: .respond(status: status, contentType: "application/json;charset=UTF-8", body: errorBody(error)),
            date: IMFDate.format(now), delay: behavior.responseLatency, ticket: ticket)
    }

    private mutating func errorBody(_ error: GatewayError) -> [UInt8] {
        let useErrorResponse =
            switch behavior.errorEnvelope {
            case .topLevel: false
            case .errorResponse: true
            case .mixed: random.coinFlip()
            }
        var inner = JSONObjectWriter()
        inner.string("type", error.type)
        inner.string("code", error.code)
        inner.string(useErrorResponse ? "msg" : "message", error.message)
        inner.string("request_id", requestID())
        inner.string("_trace_id_", "21" + random.text(count: 30, from: Self.hexAlphabet))
        guard useErrorResponse else { return inner.finished() }
        var outer = JSONObjectWriter()
        outer.object("error_response", inner)
        return outer.finished()
    }

    /// The authorization page, at the root of the gateway's host as the real
    /// one is: after "the seller logs in" (the `seller_id` parameter, else
    /// ``GatewayBehavior/loggedInSeller``) it redirects (302) to
    /// `redirect_uri` with a fresh one-use `code` and the `state` given.
    static let authorizePagePath = "/oauth/authorize"

    private mutating func authorizePage(_ request: GatewayRequest, now: Timestamp, ticket: RequestTicket)
        -> GatewayAnswer
    {
        let parameters = request.parameters
        guard request.method == "GET" else { return plainStatus(405, "Not Allowed", now: now, ticket: ticket) }
        guard parameters["response_type"] == "code", let clientID = parameters["client_id"],
            behavior.apps[clientID] != nil, let redirectURI = parameters["redirect_uri"],
            redirectURI.hasPrefix("http://") || redirectURI.hasPrefix("https://")
        else {
            return plainStatus(400, "Bad authorization request", now: now, ticket: ticket)
        }
        guard let sellerID = parameters["seller_id"] ?? behavior.loggedInSeller else {
            return plainStatus(400, "No seller is logged in", now: now, ticket: ticket)
        }
        // The seller authorizes the app whose page this is.
        guard let sellerKey = try? sellerRef(sellerID, appKey: clientID) else {
            return plainStatus(400, "Unknown seller", now: now, ticket: ticket)
        }
        let code = issueAuthorizationCode(for: sellerKey, validity: nil)
        count(ticket.appKey) { $0.authorizations += 1 }
        var query: [(key: String, value: String)] = [("code", code)]
        if let state = parameters["state"] { query.append(("state", state)) }
        let location = redirectURI + (redirectURI.contains("?") ? "&" : "?") + PercentEncoding.formEncode(query)
        return GatewayAnswer(
            action: .redirect(location: location), date: IMFDate.format(now), delay: .zero, ticket: ticket)
    }

    private mutating func plainStatus(_ status: Int, _ reason: String, now: Timestamp, ticket: RequestTicket)
        -> GatewayAnswer
    {
        count(ticket.appKey) { $0.rejections["HTTP\(status)", default: 0] += 1 }
        return GatewayAnswer(
            action: .respond(status: status, contentType: "text/html", body: HTMLPages.status(status, reason)),
            date: IMFDate.format(now), delay: .zero, ticket: ticket)
    }

    private mutating func faultAnswer(_ kind: FaultKind, now: Timestamp, ticket: RequestTicket) -> GatewayAnswer {
        count(ticket.appKey) { $0.faults[kind, default: 0] += 1 }
        logger.debug("fault", metadata: ["kind": "\(kind)"])
        let date = IMFDate.format(now)
        let latency = behavior.responseLatency
        func html(_ status: Int, _ body: [UInt8], delay: Duration) -> GatewayAnswer {
            GatewayAnswer(
                action: .respond(status: status, contentType: "text/html", body: body), date: date, delay: delay,
                ticket: ticket)
        }
        func json(_ body: [UInt8]) -> GatewayAnswer {
            GatewayAnswer(
                action: .respond(status: 200, contentType: "application/json;charset=UTF-8", body: body),
                date: date, delay: latency, ticket: ticket)
        }
        switch kind {
        case .http500: return html(500, HTMLPages.status(500, "Internal Server Error"), delay: latency)
        case .http502: return html(502, HTMLPages.status(502, "Bad Gateway"), delay: latency)
        case .http503: return html(503, HTMLPages.status(503, "Service Temporarily Unavailable"), delay: latency)
        case .htmlPage: return html(200, HTMLPages.denied, delay: latency)
        case .slowResponse:
            return html(504, HTMLPages.status(504, "Gateway Time-out"), delay: behavior.slowResponseDelay)
        case .connectionReset:
            return GatewayAnswer(action: .reset, date: date, delay: .zero, ticket: ticket)
        case .throttled:
            let seconds = max(behavior.throttleBanSeconds, 1)
            bans[ticket.appKey ?? ""] = now + .seconds(seconds)
            return json(errorBody(.apiCallLimit(banSeconds: seconds)))
        case .serviceTimeout: return json(errorBody(.serviceTimeout))
        case .ispError: return json(errorBody(.internalError))
        case .malformedJSON:
            // A success-shaped body with tokens that were never issued, cut before
            // its closing brace so it can never parse.
            let dummy = IssuedTokenPair(
                sellerID: "0", origin: .rotation, accessToken: Secret(newToken(prefix: "50000")),
                refreshToken: Secret(newToken(prefix: "50001")), issuedAt: now, accessTokenLifetime: .seconds(60),
                expireTime: now + .seconds(60), refreshTokenValidTime: now + .seconds(120),
                refreshExpiresIn: .seconds(120), requestID: requestID(), delivery: .sent)
            let body = successBody(dummy, seller: SimulatedSeller(sellerID: "0"), shape: shape(for: ticket.appKey))
            let cut = 1 + Int(random.next() % UInt64(body.count - 2))
            return json(Array(body[..<cut]))
        case .resetAfterRotation:
            preconditionFailure("resetAfterRotation takes effect after the request succeeds")
        }
    }
}
