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
/// 4. A `code` of `"0"` (string or number), or no `code` but a token:
///    a grant, whatever the HTTP status. A grant means the gateway has already
///    rotated the refresh token, so dropping one would lose the seller; the
///    absent-`code` case is accepted for gateways on the same protocol that
///    omit it on success (Lazada).
/// 5. Anything else: the status decides if it is not 2xx, else
///    ``IOPFailureCode/malformedResponse``.
///
/// A grant needs an `access_token` or a `refresh_token`; everything else is
/// salvaged: a missing `refresh_token` means it was not rotated (or, with
/// `refresh_expires_in` 0, that this is the final grant); a missing or odd
/// lifetime is sanitized and noted in the grant's anomalies; a missing
/// `seller_id` (the `/auth/token/security/refresh` shape) leaves the seller to
/// the caller, who knows whose token it sent. Lifetimes are seconds, absolute
/// times epoch milliseconds, each a JSON number or a numeric string; null and
/// `""` mean absent.
///
/// Lazada answers in its own shape on the same protocol: no top-level
/// `seller_id`, but `country` and a list of the sellers the token serves
/// (`country_user_info`, or `user_info`), one per country of a cross-border
/// account. They become the profile's ``TokenKeeperCore/SellerProfile/ventures``,
/// and the first of them keys the grant: a top-level `seller_id`, else the
/// first listed seller, else `user_id` (an AliExpress answer without one).
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
                return .failure(
                    Self.statusFailure(
                        status, headers: headers, gatewayDate: gatewayDate, receivedAt: receivedAt, requestID: nil))
            }
            return .failure(Self.unreadableBody(bytes, status: status, error: error))
        }

        var secrets = redacting
        for token in [fields.accessToken, fields.refreshToken] {
            if let text = token?.text { secrets.append(Secret(text)) }
        }
        // The gateway's own words (request id, code) are logged too: a gateway
        // that echoes a token there gets it replaced as in a message.
        let requestID = (fields.requestID?.text ?? fields.errorResponse?.requestID?.text ?? fields.traceID?.text)
            .map { Self.sanitize($0, redacting: secrets) }

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
                    code: Self.sanitize(code, redacting: secrets), type: envelope.type?.text,
                    message: Self.sanitize(message, redacting: secrets),
                    requestID: requestID, httpStatus: status))
        }
        if let code = fields.code?.text, code != "0" {
            let message = fields.message?.text ?? fields.msg?.text ?? ""
            return .failure(
                IOPFailureClassifier.classify(
                    code: Self.sanitize(code, redacting: secrets), type: fields.type?.text,
                    message: Self.sanitize(message, redacting: secrets),
                    requestID: requestID, httpStatus: status))
        }
        if fields.code?.text == "0" || !(fields.accessToken?.isAbsent ?? true)
            || !(fields.refreshToken?.isAbsent ?? true)
        {
            return grant(
                from: fields, requestID: requestID, status: status, receivedAt: receivedAt, gatewayDate: gatewayDate)
        }
        if !(200...299).contains(status) {
            return .failure(
                Self.statusFailure(
                    status, headers: headers, gatewayDate: gatewayDate, receivedAt: receivedAt, requestID: requestID))
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

    /// The longest lifetime taken at its word; anything longer is absurd
    /// (and would overflow the arithmetic), and is cut to this.
    static let maximumLifetime: Duration = .seconds(10 * 366 * 86_400)

    /// A success answer, salvaged whatever else is odd about it: a new refresh
    /// token the gateway handed out must reach the store, because the one we
    /// sent is already dead. Odd values (a lifetime that is missing, negative,
    /// absurd or not a number; a missing seller id) are sanitized and listed
    /// in ``TokenKeeperCore/TokenGrant/anomalies``. Only an answer carrying no
    /// token at all is malformed.
    private func grant(
        from fields: IOPResponseFields, requestID: String?, status: Int, receivedAt: Timestamp,
        gatewayDate: Timestamp?
    ) -> Result<TokenGrant, GatewayFailure> {
        var anomalies: [String] = []
        func token(_ value: JSONScalar?, _ name: String) -> Secret? {
            // Tokens must be JSON strings: a number there is not a token the gateway issued.
            if case .string(let text)? = value, !text.trimmingASCIISpaces.isEmpty { return Secret(text) }
            if let value, !value.isAbsent { anomalies.append("\(name) is not a string") }
            return nil
        }
        /// A whole, non-negative number, or nil (absent, or odd: noted).
        func number(_ value: JSONScalar?, _ name: String) -> Int64? {
            guard let value, !value.isAbsent else { return nil }
            guard let number = value.integer, number >= 0 else {
                anomalies.append("\(name) is not a non-negative whole number")
                return nil
            }
            return number
        }
        func lifetime(_ seconds: Int64?, _ name: String) -> Duration? {
            guard let seconds else { return nil }
            guard seconds <= Self.maximumLifetime.components.seconds else {
                anomalies.append("\(name) \(seconds) is absurd; cut to ten years")
                return Self.maximumLifetime
            }
            return .seconds(seconds)
        }
        /// Epoch milliseconds; zero stands for absent (the epoch is never a deadline).
        func moment(_ value: JSONScalar?, _ name: String) -> Timestamp? {
            guard let milliseconds = number(value, name), milliseconds > 0 else { return nil }
            guard milliseconds < 253_402_300_800_000 else {  // year 10000
                anomalies.append("\(name) is beyond the year 9999")
                return nil
            }
            return Timestamp(millisecondsSince1970: milliseconds)
        }

        let accessToken = token(fields.accessToken, "access_token")
        let refreshToken = token(fields.refreshToken, "refresh_token")
        guard accessToken != nil || refreshToken != nil else {
            return .failure(
                GatewayFailure(
                    .transient, code: IOPFailureCode.malformedResponse,
                    message: "a success answer has neither an access_token nor a refresh_token",
                    requestID: requestID, httpStatus: status))
        }
        if accessToken == nil { anomalies.append("no access_token") }

        let expiresIn = lifetime(number(fields.expiresIn, "expires_in"), "expires_in")
        let refreshExpiresIn = lifetime(number(fields.refreshExpiresIn, "refresh_expires_in"), "refresh_expires_in")
        let expireTime = moment(fields.expireTime, "expire_time")
        let validTime = moment(fields.refreshTokenValidTime, "refresh_token_valid_time")

        // Absolute times are the gateway's; their distance is measured from
        // the gateway's own clock where it told us (its Date header).
        let now = gatewayDate ?? receivedAt
        let accessLifetime: Duration
        let accessExpiry: Timestamp
        switch (expiresIn, expireTime) {
        case (let stated?, let time?): (accessLifetime, accessExpiry) = (stated, time)
        case (let stated?, nil): (accessLifetime, accessExpiry) = (stated, receivedAt + stated)
        case (nil, let time?): (accessLifetime, accessExpiry) = (max(time - now, .zero), time)
        case (nil, nil):
            // Unknown: taken as already expired, so readers are not handed a
            // token of unknown life and the seller is refreshed again after
            // the minimum interval.
            if accessToken != nil { anomalies.append("neither expires_in nor expire_time") }
            (accessLifetime, accessExpiry) = (.zero, receivedAt)
        }
        let refreshLifetime = refreshExpiresIn ?? validTime.map { max($0 - now, .zero) }
        // Only the gateway's explicit word makes a grant final: a valid time
        // that looks passed may be our clock's doing.
        let isFinal = refreshExpiresIn == .zero

        let ventures = Self.ventures(from: fields, anomalies: &anomalies)
        // Lazada names no seller at the top: its account is keyed by the first
        // seller it lists, as tokenkeeper files it.
        // Without a top-level seller_id, a Lazada account is keyed by the
        // first seller it lists (whatever user_id says), an AliExpress
        // answer by its user_id.
        let sellerID = fields.sellerID?.text ?? ventures.first?.sellerID ?? fields.userID?.text ?? ""
        let profile = SellerProfile(
            userID: fields.userID?.text, userNick: fields.userNick?.text, account: fields.account?.text,
            accountPlatform: fields.accountPlatform?.text, sp: fields.sp?.text, locale: fields.locale?.text,
            country: Self.country(fields.country), ventures: ventures)
        return .success(
            TokenGrant(
                sellerID: sellerID, profile: profile, accessToken: accessToken, refreshToken: refreshToken,
                accessTokenLifetime: accessLifetime, refreshTokenLifetime: refreshLifetime, expireTime: accessExpiry,
                refreshTokenValidTime: validTime, receivedAt: receivedAt, requestID: requestID,
                gatewayDate: gatewayDate, isFinalGrant: isFinal, anomalies: anomalies))
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
    ///
    /// Runs on every answer (its request id), so the common case is cheap:
    /// plain ASCII without control characters skips the flattening, and a
    /// secret is searched for only where it fits.
    static func sanitize(_ message: String, redacting secrets: [Secret]) -> String {
        // Control characters become spaces first, so that a token written
        // with a tab in the message is still found (as its spaced form).
        func flattened(_ text: String) -> String {
            guard mayHoldControls(text) else { return text }
            return String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
        }
        var text = flattened(message)
        for secret in secrets where secret.exposedValue.count >= 4 {
            for form in [secret.exposedValue, flattened(secret.exposedValue)]
            where form.utf8.count <= text.utf8.count && text.contains(form) {
                text = text.replacingOccurrences(of: form, with: secret.description)
            }
        }
        if text.utf8.count > maxMessageLength, text.count > maxMessageLength {
            text = String(text.prefix(maxMessageLength)) + "…"
        }
        return text
    }

    /// False only for printable ASCII: anything else may hold a control
    /// character (C0, DEL, or C1 beyond ASCII) and takes the slow path.
    private static func mayHoldControls(_ text: String) -> Bool {
        text.utf8.contains { $0 < 0x20 || $0 >= 0x7F }
    }
}
