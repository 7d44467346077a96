import Crypto
import IOPGateway
import Logging
import TokenKeeperCore

// Business APIs: every API that is not a token API, under the base path
// (`/rest/orders/get`) or on `/sync` (`method=aliexpress.solution.order.get`).
// They pass the token APIs' system checks, then the seller's access token
// decides; a success echoes what the gateway read, so a test can compare a
// call sent through a proxy with the same call sent directly.
extension SimulatedGateway {
    /// Whether a path under the base path is a business API: the token APIs'
    /// namespace (`/auth/…`) is closed, so a mistyped token path stays
    /// `InvalidApiPath` (a configuration error) rather than asking for a token.
    static func isBusinessAPI(_ api: String) -> Bool {
        api != "/" && !IOPAPIName.isTokenAPI(api)
    }

    /// Answers a business call once any fault that precedes it has been drawn.
    /// - Parameters:
    ///   - api: The path under the base path, or on `/sync` the `method` parameter.
    ///   - isSync: A `/sync` call: the signature covers no path, and the access
    ///     token is expected in `session` (the iop SDKs' name).
    ///   - fault: A ``FaultKind/resetAfterRotation`` drawn for this request drops
    ///     the answer after the call took effect.
    mutating func businessCall(
        _ request: GatewayRequest, api: String, isSync: Bool, fault: FaultKind?, now: Timestamp,
        ticket: RequestTicket
    ) -> GatewayAnswer {
        let app = ticket.appKey
        count(app) { $0.businessCalls += 1 }
        if isSync, api.isEmpty {
            return refusal(.missingParameter("method"), now: now, ticket: ticket)
        }
        // The lazop SDKs sign empty values too; the Java-style signature leaves them out.
        if let error = checkSystemParameters(
            request.parameters, signedPath: isSync ? "" : api, now: now, acceptsSignedEmptyValues: true)
        {
            logger.debug("refused", metadata: ["api": "\(api)", "code": "\(error.code)"])
            return refusal(error, now: now, ticket: ticket)
        }
        let token = [request.parameters["access_token"], request.parameters["session"]]
            .compactMap { $0 }.first { !$0.isEmpty }
        let seller: SellerRef
        switch accessTokenOwner(token, tokenParameter: isSync ? "session" : "access_token", appKey: app, now: now) {
        case .failure(let error):
            count(app) { $0.businessCallsRejectedForToken += 1 }
            logger.debug("refused", metadata: ["api": "\(api)", "code": "\(error.code)"])
            return refusal(error, now: now, ticket: ticket)
        case .success(let owner):
            seller = owner
        }
        count(app) {
            $0.successes[api, default: 0] += 1
            $0.businessCallsServed += 1
            $0.businessCallsBySeller[seller.sellerID, default: 0] += 1
        }
        if fault == .resetAfterRotation {
            count(app) { $0.faults[.resetAfterRotation, default: 0] += 1 }
            return GatewayAnswer(action: .reset, date: IMFDate.format(now), delay: .zero, ticket: ticket)
        }
        var json = JSONObjectWriter()
        json.string("code", "0")
        json.string("request_id", requestID())
        json.object("data", Self.echo(api: api, sellerID: seller.sellerID, form: request.form))
        return GatewayAnswer(
            action: .respond(status: 200, contentType: "application/json;charset=UTF-8", body: json.finished()),
            date: IMFDate.format(now), delay: behavior.responseLatency, ticket: ticket)
    }

    /// The seller an access token serves now. Every other token is
    /// `IllegalAccessToken`: unknown, expired, issued for another app, or no
    /// longer the seller's current one (superseded by a refresh or a new
    /// authorization, or invalidated).
    private func accessTokenOwner(_ token: String?, tokenParameter: String, appKey: String?, now: Timestamp)
        -> Result<SellerRef, GatewayError>
    {
        guard let token else { return .failure(.missingParameter(tokenParameter)) }
        guard let record = accessTokens[token], record.seller.serves(appKey), now < record.expireTime,
            sellers[record.seller]?.currentAccessToken == token
        else { return .failure(.illegalAccessToken) }
        return .success(record.seller)
    }

    /// What the gateway read, in a fixed order: the API, the token's seller,
    /// the API parameters by name, and each file's name, size and digest.
    private static func echo(api: String, sellerID: String, form: IOPForm) -> JSONObjectWriter {
        var parameters = JSONObjectWriter()
        let apiParameters = form.parameters.filter { !IOPForm.systemParameterNames.contains($0.key) }
        for (name, value) in apiParameters.sorted(by: { Array($0.key.utf8).lexicographicallyPrecedes($1.key.utf8) }) {
            parameters.string(name, value)
        }
        let files = form.files.map { file in
            var entry = JSONObjectWriter()
            entry.string("name", file.name)
            entry.string("filename", file.filename)
            entry.number("size", Int64(file.body.count))
            entry.string("sha256", SHA256.hash(data: file.body).map { Self.hex($0) }.joined())
            return entry
        }
        var data = JSONObjectWriter()
        data.string("api", api)
        data.string("seller_id", sellerID)
        data.object("params", parameters)
        data.array("files", files)
        return data
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16)
        return byte < 0x10 ? "0" + digits : digits
    }
}
