import Foundation
public import TokenKeeperCore

/// Turns one HTTP answer of `/auth/token/create` or `/auth/token/refresh` into
/// a ``TokenKeeperCore/TokenGrant`` or a classified
/// ``TokenKeeperCore/GatewayFailure``. Pure and total: every byte sequence
/// gets an outcome, none crashes.
///
/// The rules, in order:
/// 1. A body over the size cap is ``IOPFailureCode/responseTooLarge`` (transient).
/// 2. A body that is not a JSON object: for a non-2xx status, the status decides
///    (``IOPFailureClassifier/classify(httpStatus:retryAfter:requestID:)``);
///    otherwise ``IOPFailureCode/nonJSONResponse`` when it does not even start
///    like JSON (an HTML page), else ``IOPFailureCode/malformedResponse``.
/// 3. An `error_response` object, or a `code` other than `"0"`: the gateway's
///    error, classified by ``IOPFailureClassifier``.
/// 4. A `code` of `"0"` (string or number), or no `code` but an `access_token`:
///    a grant, whatever the HTTP status. A grant means the gateway has already
///    rotated the refresh token, so dropping one would lose the seller; the
///    absent-`code` case is accepted for gateways on the same protocol that
///    omit it on success (Lazada).
/// 5. Anything else: the status decides if it is not 2xx, else
///    ``IOPFailureCode/malformedResponse``.
///
/// A grant needs a non-empty `access_token`; a `refresh_token` (unless
/// `refresh_expires_in` is 0, the final grant, where the gateway may omit it);
/// `expires_in` or `expire_time`; `refresh_expires_in` or
/// `refresh_token_valid_time`; and `seller_id`, or `user_id` where `seller_id`
/// is empty. Lifetimes are seconds, absolute times epoch milliseconds, each a
/// JSON number or a numeric string; null and `""` mean absent; any other value
/// in a numeric field makes the answer malformed.
public struct IOPResponseDecoder: Sendable {
    /// Bodies longer than this are refused unread.
    public var maxResponseBytes: Int

    /// Gateway messages are stored as an account's last error and logged;
    /// a longer one is cut here.
    static let maxMessageLength = 300

    public init(maxResponseBytes: Int = 1 << 20) {
        self.maxResponseBytes = maxResponseBytes
    }

    /// Decodes one answer.
    /// - Parameters:
    ///   - status: The HTTP status code.
    ///   - headers: The response headers; `Date` and `Retry-After` are read.
    ///   - body: The response body.
    ///   - receivedAt: When the answer arrived, by our clock.
    ///   - redacting: Values that must never appear in a failure's message (the
    ///     token or code just sent); a gateway that echoes one gets it replaced
    ///     by its fingerprint.
    public func decode(
        status: Int, headers: [(name: String, value: String)], body: some Collection<UInt8>,
        receivedAt: Timestamp, redacting: [Secret] = []
    ) -> Result<TokenGrant, GatewayFailure> {
        guard body.count <= maxResponseBytes else {
            return .failure(Self.responseTooLarge(status: status, limit: maxResponseBytes))
        }
        let gatewayDate = Self.header("Date", in: headers).flatMap(HTTPDate.parse)
        let bytes = Data(body)
        let fields: IOPResponseFields
        do {
            fields = try JSONDecoder().decode(IOPResponseFields.self, from: bytes)
        } catch {
            if !(200...299).contains(status) {
                return .failure(Self.statusFailure(status, headers: headers, gatewayDate: gatewayDate, receivedAt: receivedAt, requestID: nil))
            }
            return .failure(Self.unreadableBody(bytes, status: status, error: error))
        }

        let requestID = fields.requestID?.text ?? fields.errorResponse?.requestID?.text ?? fields.traceID?.text
        var secrets = redacting
        for token in [fields.accessToken, fields.refreshToken] { if let text = token?.text { secrets.append(Secret(text)) } }

        if let envelope = fields.errorResponse {
            let message = envelope.msg?.text ?? envelope.message?.text ?? ""
            guard let code = envelope.code?.text else {
                return .failure(
                    GatewayFailure(
                        .transient, code: IOPFailureCode.malformedResponse,
                        message: "error_response without a code: " + Self.sanitize(message, redacting: secrets),
                        requestID: requestID, httpStatus: status))
            }
            return .failure(
                IOPFailureClassifier.classify(
                    code: code, type: envelope.type?.text, message: Self.sanitize(message, redacting: secrets),
                    requestID: requestID, httpStatus: status))
        }
        if let code = fields.code?.text, code != "0" {
            let message = fields.message?.text ?? fields.msg?.text ?? ""
            return .failure(
                IOPFailureClassifier.classify(
                    code: code, type: fields.type?.text, message: Self.sanitize(message, redacting: secrets),
                    requestID: requestID, httpStatus: status))
        }
        if fields.code?.text == "0" || !(fields.accessToken?.isAbsent ?? true) {
            return grant(from: fields, requestID: requestID, status: status, receivedAt: receivedAt, gatewayDate: gatewayDate)
        }
        if !(200...299).contains(status) {
            return .failure(Self.statusFailure(status, headers: headers, gatewayDate: gatewayDate, receivedAt: receivedAt, requestID: requestID))
        }
        return .failure(
            GatewayFailure(
                .transient, code: IOPFailureCode.malformedResponse,
                message: "the answer has neither a code nor an access token", requestID: requestID,
                httpStatus: status))
    }

    /// The failure for a body over `limit` bytes, also used when the client
    /// stops reading at the cap.
    public static func responseTooLarge(status: Int?, limit: Int) -> GatewayFailure {
        GatewayFailure(
            .transient, code: IOPFailureCode.responseTooLarge,
            message: "the answer exceeded \(limit) bytes and was not read", httpStatus: status)
    }

    private func grant(
        from fields: IOPResponseFields, requestID: String?, status: Int, receivedAt: Timestamp,
        gatewayDate: Timestamp?
    ) -> Result<TokenGrant, GatewayFailure> {
        func malformed(_ why: String) -> Result<TokenGrant, GatewayFailure> {
            .failure(
                GatewayFailure(
                    .transient, code: IOPFailureCode.malformedResponse,
                    message: "a success answer \(why)", requestID: requestID, httpStatus: status))
        }
        // A numeric field may be absent; if present it must be a whole number.
        enum Numeric { case absent, value(Int64), invalid }
        func numeric(_ value: JSONScalar?) -> Numeric {
            guard let value, !value.isAbsent else { return .absent }
            return value.integer.map(Numeric.value) ?? .invalid
        }
        var values: [String: Int64] = [:]
        let numericFields: [(String, JSONScalar?)] = [
            ("expires_in", fields.expiresIn), ("refresh_expires_in", fields.refreshExpiresIn),
            ("expire_time", fields.expireTime), ("refresh_token_valid_time", fields.refreshTokenValidTime),
        ]
        for (name, field) in numericFields {
            switch numeric(field) {
            case .absent: break
            case .value(let number) where number >= 0: values[name] = number
            case .value, .invalid: return malformed("has a field \(name) that is not a non-negative whole number")
            }
        }

        // Tokens must be JSON strings: a number there is not a token the gateway issued.
        guard case .string(let accessToken)? = fields.accessToken, !accessToken.isEmpty else {
            return malformed("has no access_token")
        }
        let refreshExpiresIn = values["refresh_expires_in"]
        let refreshToken: String
        if case .string(let text)? = fields.refreshToken, !text.isEmpty {
            refreshToken = text
        } else if refreshExpiresIn == 0 {
            // The final grant: the gateway will not refresh again, and may say so
            // by leaving the refresh token out.
            refreshToken = ""
        } else {
            return malformed("has no refresh_token")
        }

        let now = gatewayDate ?? receivedAt
        // Zero stands for absent in the absolute times: the epoch is never a deadline.
        let expireTime = values["expire_time"].flatMap { $0 > 0 ? Timestamp(millisecondsSince1970: $0) : nil }
        let validTime = values["refresh_token_valid_time"].flatMap {
            $0 > 0 ? Timestamp(millisecondsSince1970: $0) : nil
        }
        let accessLifetime: Duration
        let accessExpiry: Timestamp
        switch (values["expires_in"], expireTime) {
        case (let seconds?, let time?): (accessLifetime, accessExpiry) = (.seconds(seconds), time)
        case (let seconds?, nil): (accessLifetime, accessExpiry) = (.seconds(seconds), receivedAt + .seconds(seconds))
        case (nil, let time?): (accessLifetime, accessExpiry) = (max(time - now, .zero), time)
        case (nil, nil): return malformed("has neither expires_in nor expire_time")
        }
        let refreshLifetime: Duration
        if let seconds = refreshExpiresIn {
            refreshLifetime = .seconds(seconds)
        } else if let validTime {
            refreshLifetime = max(validTime - now, .zero)
        } else {
            return malformed("has neither refresh_expires_in nor refresh_token_valid_time")
        }

        guard let sellerID = fields.sellerID?.text ?? fields.userID?.text else {
            return malformed("has neither seller_id nor user_id")
        }
        let profile = SellerProfile(
            userID: fields.userID?.text, userNick: fields.userNick?.text, account: fields.account?.text,
            accountPlatform: fields.accountPlatform?.text, sp: fields.sp?.text, locale: fields.locale?.text)
        return .success(
            TokenGrant(
                sellerID: sellerID, profile: profile, accessToken: Secret(accessToken),
                refreshToken: Secret(refreshToken), accessTokenLifetime: accessLifetime,
                refreshTokenLifetime: refreshLifetime, expireTime: accessExpiry, refreshTokenValidTime: validTime,
                receivedAt: receivedAt, requestID: requestID, gatewayDate: gatewayDate))
    }

    private static func statusFailure(
        _ status: Int, headers: [(name: String, value: String)], gatewayDate: Timestamp?, receivedAt: Timestamp,
        requestID: String?
    ) -> GatewayFailure {
        var retryAfter: Duration?
        if let value = header("Retry-After", in: headers) {
            if let seconds = Int64(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
                retryAfter = .seconds(min(seconds, 86_400))
            } else if let date = HTTPDate.parse(value) {
                retryAfter = max(date - (gatewayDate ?? receivedAt), .zero)
            }
        }
        return IOPFailureClassifier.classify(httpStatus: status, retryAfter: retryAfter, requestID: requestID)
    }

    private static func unreadableBody(_ bytes: Data, status: Int, error: any Error) -> GatewayFailure {
        // Say what was wrong, never what was there: a truncated grant holds tokens.
        let firstByte = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        if firstByte != UInt8(ascii: "{") && firstByte != UInt8(ascii: "[") {
            return GatewayFailure(
                .transient, code: IOPFailureCode.nonJSONResponse,
                message: bytes.isEmpty ? "the answer is empty" : "the answer (\(bytes.count) bytes) is not JSON",
                httpStatus: status)
        }
        let why: String
        if case DecodingError.typeMismatch = error {
            why = "is JSON but not an object"
        } else {
            why = "is not valid JSON (truncated?)"
        }
        return GatewayFailure(
            .transient, code: IOPFailureCode.malformedResponse, message: "the answer (\(bytes.count) bytes) \(why)",
            httpStatus: status)
    }

    static func header(_ name: String, in headers: [(name: String, value: String)]) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// One line, bounded, with every known secret replaced by its fingerprint.
    static func sanitize(_ message: String, redacting secrets: [Secret]) -> String {
        var text = message
        for secret in secrets where secret.exposedValue.count >= 4 {
            text = text.replacingOccurrences(of: secret.exposedValue, with: secret.description)
        }
        text = String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
        if text.count > maxMessageLength { text = String(text.prefix(maxMessageLength)) + "…" }
        return text
    }
}
