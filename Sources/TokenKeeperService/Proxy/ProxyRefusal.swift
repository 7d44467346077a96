import Foundation
import TokenKeeperHTTP

/// A call the proxy refuses before (or instead of) forwarding it, answered
/// in the gateway's own error shape (`type`, `code`, `message`,
/// `request_id`) so that the vendor's SDKs report it as they report the
/// gateway's. The message names what is wrong and never a value the
/// client sent.
struct ProxyRefusal: Error, Sendable, Equatable {
    var type = "ISV"
    var code: String
    var message: String
    /// The HTTP status: 200, as the gateway answers its own refusals, but
    /// for what a gateway would answer otherwise (a body too large).
    var status = 200
    /// The metric's `outcome` label and the log line's reason.
    var outcome: String

    /// The answer, with `X-Tokenkeeper-Refused` so that an operator (and
    /// curl) tells the proxy's refusals from the gateway's.
    func reply(requestID: String) -> ForwardedReply {
        let object: [String: String] = ["type": type, "code": code, "message": message, "request_id": requestID]
        let body =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data()
        return ForwardedReply(
            status: status,
            headers: [
                .init("Content-Type", "application/json;charset=UTF-8"), .init("X-Tokenkeeper-Refused", code),
            ],
            body: Array(body))
    }

    static let notFound = ProxyRefusal(
        code: "InvalidApiPath",
        message: "The path is not /<app>/rest/<api path>, /<app>/sync, /rest/<api path> or /sync", status: 404,
        outcome: "invalid_path")
    static let tooLarge = ProxyRefusal(
        code: "RequestTooLarge", message: "The request is larger than proxy.max_request_bytes allows", status: 413,
        outcome: "too_large")
    static let tokenAPI = ProxyRefusal(
        code: "ApiNotAllowed",
        message: "The token APIs (/auth/…) are tokenkeeper's own: readers never call them through the proxy",
        outcome: "token_api")
    static let busy = ProxyRefusal(
        type: "ISP", code: "ServiceUnavailable",
        message: "The proxy is answering as many calls as proxy.max_concurrent_calls allows; try again", status: 503,
        outcome: "busy")
    static let uriTooLong = ProxyRefusal(
        code: "RequestTooLarge", message: "The request's URL is longer than 8 KiB", status: 414, outcome: "too_large")
    static let badForm = ProxyRefusal(
        code: "InvalidParameter", message: "The request's parameters cannot be read (a malformed form body)",
        status: 400, outcome: "malformed")
    static let missingAppKey = ProxyRefusal(
        code: "MissingAppKey", message: "App key is required: sign with the key tokenkeeper gave this client",
        outcome: "unknown_client")
    static let unknownClient = ProxyRefusal(
        code: "InvalidAppKey", message: "Invalid app Key: no proxy client has this key", outcome: "unknown_client")
    static let signMethod = ProxyRefusal(
        code: "IncompleteSignature", message: "The request must be signed with sign_method sha256",
        outcome: "bad_signature")
    static let badSignature = ProxyRefusal(
        code: "IncompleteSignature",
        message: "The request signature does not conform to platform standards (check the client's secret)",
        outcome: "bad_signature")
    static func staleTimestamp(toleranceSeconds: Int64) -> ProxyRefusal {
        ProxyRefusal(
            code: "IllegalTimestamp",
            message: "Invalid timestamp: it must be milliseconds since 1970 within \(toleranceSeconds) seconds "
                + "of tokenkeeper's clock", outcome: "stale_timestamp")
    }
    static func missingSeller(_ parameter: String) -> ProxyRefusal {
        ProxyRefusal(
            code: "MissingParameter",
            message: "The input parameter \"\(parameter)\" is not supplied: pass the seller id where the access "
                + "token would go", outcome: "missing_seller")
    }
    static let appNotNamed = ProxyRefusal(
        code: "InvalidApiPath",
        message: "The path names no app and this client may call for several: use /<app>/rest/<api path>",
        outcome: "app_not_named")
    static func appNotAllowed(_ app: String) -> ProxyRefusal {
        ProxyRefusal(
            code: "AppNotAllowed", message: "This client may not call for app \(app)", outcome: "app_not_allowed")
    }
    static func unknownApp(_ app: String) -> ProxyRefusal {
        ProxyRefusal(code: "InvalidApiPath", message: "No app \(app) is configured", outcome: "unknown_app")
    }
    static let sellerNotAllowed = ProxyRefusal(
        code: "SellerNotAllowed", message: "This client may not call for this seller", outcome: "seller_not_allowed")
    static let sellerNotFound = ProxyRefusal(
        code: "SellerNotFound", message: "tokenkeeper keeps no seller with this id for this app",
        outcome: "seller_not_found")
    static func sellerNotActive(status: String, reason: String?) -> ProxyRefusal {
        ProxyRefusal(
            code: status == "disabled" ? "SellerDisabled" : "SellerReauthRequired",
            message: "The seller is \(status)" + (reason.map { " (\($0))" } ?? "")
                + (status == "disabled"
                    ? ": an operator disabled it" : ": the seller must authorize the app again"),
            outcome: status == "disabled" ? "seller_disabled" : "seller_reauth_required")
    }
    static let noAccessToken = ProxyRefusal(
        code: "IllegalAccessToken",
        message: "tokenkeeper holds no unexpired access token for this seller yet; try again after its refresh",
        outcome: "no_access_token")
    static func noAPIURL(country: String?) -> ProxyRefusal {
        let message =
            country.map { "No API URL is configured for this seller's country (\($0)): add it to api_urls" }
            ?? "The seller's country is not known yet (an import does not carry it; its next refresh brings it), "
            + "and no api_url is configured for sellers of no known country"
        return ProxyRefusal(type: "ISP", code: "NoApiUrl", message: message, outcome: "no_api_url")
    }
    static let clientRate = ProxyRefusal(
        type: "ISP", code: "ApiCallLimit",
        message: "This client's calls are over its proxy max_calls_per_second, ban will last 1 seconds",
        outcome: "client_rate")
    static func appRate(seconds: Int64) -> ProxyRefusal {
        ProxyRefusal(
            type: "ISP", code: "ApiCallLimit",
            message: "The app's call budget for proxied calls is spent (refreshes keep their share), "
                + "ban will last \(max(seconds, 1)) seconds", outcome: "app_rate")
    }
    static let dailyCalls = ProxyRefusal(
        type: "ISP", code: "AppCallLimit",
        message: "The app's proxied calls for today (proxy.app_daily_calls) are spent; the rest is kept for "
            + "refreshes until the marketplace's day ends", outcome: "daily_limit")
    static func gatewayUnreachable(_ detail: String) -> ProxyRefusal {
        ProxyRefusal(
            type: "ISP", code: "GatewayUnavailable", message: "The gateway could not be reached: \(detail)",
            status: 502, outcome: "gateway_unreachable")
    }
    static let storeUnavailable = ProxyRefusal(
        type: "ISP", code: "ServiceUnavailable", message: "tokenkeeper cannot read its store now; try again",
        status: 503, outcome: "store_unavailable")
}
