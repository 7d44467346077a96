import IOPGateway

/// What the HTTP layer must do with a request, decided by the gateway logic.
struct GatewayAnswer: Sendable {
    enum Action: Sendable {
        case respond(status: Int, contentType: String, body: [UInt8])
        /// Reset the connection without answering.
        case reset
        /// `302 Found` to `location` (the authorization page's redirect).
        case redirect(location: String)
    }

    var action: Action
    /// The `Date` header, from the gateway's clock.
    var date: String
    /// How long to hold the answer (a slow fault, or the configured latency).
    var delay: Duration
    /// Handed back through ``SimulatorCore/finish(_:delivered:)`` once the answer
    /// is written or abandoned.
    var ticket: RequestTicket
    /// Close the connection after this answer (`Connection: close`), whatever the client asked.
    var closesConnection = false
}

/// The bookkeeping a request leaves open until its answer is out.
struct RequestTicket: Sendable {
    var number: UInt64
    /// The app key the request named, when the gateway knows it: whose counters it goes to.
    var appKey: String?
    /// The seller whose in-flight refresh count this request raised.
    var inFlightSeller: SellerRef?
    /// True when the answer hands out a token pair (a success).
    var carriesGrant = false
    /// Where that pair sits in the seller's log, to mark it if it is never delivered.
    var issued: IssuedReference?
}

struct IssuedReference: Sendable {
    var sellerKey: SellerRef
    var index: Int
}

/// Where the gateway files a seller: its key (``SimulatedSeller/key``) under
/// the app key it was registered for, or open to every app (nil), as sellers
/// were before the simulator served several apps.
struct SellerRef: Hashable, Sendable, CustomStringConvertible {
    var appKey: String?
    var sellerID: String

    init(appKey: String?, sellerID: String) {
        self.appKey = appKey
        self.sellerID = sellerID
    }

    init(_ seller: SimulatedSeller) {
        self.init(appKey: seller.appKey, sellerID: seller.key)
    }

    /// Whether a request of `appKey` may use this seller's codes and tokens.
    func serves(_ appKey: String?) -> Bool {
        self.appKey == nil || self.appKey == appKey
    }

    var description: String {
        appKey.map { "\($0)/\(sellerID)" } ?? sellerID
    }
}

/// A refusal in the gateway's own words.
struct GatewayError: Error, Sendable {
    var type: String
    var code: String
    var message: String

    static func isv(_ code: String, _ message: String) -> GatewayError {
        GatewayError(type: "ISV", code: code, message: message)
    }

    static func isp(_ code: String, _ message: String) -> GatewayError {
        GatewayError(type: "ISP", code: code, message: message)
    }

    static let illegalRefreshToken = isv(
        "IllegalRefreshToken", "The specified refresh token is invalid or expired, please check and try again")
    static let incompleteSignature = isv(
        "IncompleteSignature", "The request signature does not conform to platform standards")
    static let invalidAppKey = isv("InvalidAppKey", "Invalid app Key")
    static let missingAppKey = isv("MissingAppKey", "App key is required")
    static let invalidApiPath = isv("InvalidApiPath", "The specified API path does not exist")
    static let illegalAccessToken = isv("IllegalAccessToken", "The specified access token is invalid or expired")
    /// The vendor's page does not document the code for a bad authorization
    /// code; this is the IOP gateway's usual one.
    static let invalidCode = isv("InvalidCode", "The authorization code is invalid or has expired")
    static let serviceTimeout = isp(
        "ServiceTimeout", "The request has failed due to a timeout of the backend service")
    static let internalError = isp("InternalError", "The request has failed due to an internal error of the service")

    static func missingParameter(_ name: String) -> GatewayError {
        isv(
            "MissingParameter",
            "The input parameter \"\(name)\" that is mandatory for processing this request is not supplied")
    }

    /// A body that does not parse (``IOPGateway/IOPFormError``, which never quotes a value).
    static func unreadableBody(_ error: IOPFormError) -> GatewayError {
        isv("InvalidParameter", "The request body cannot be read: \(error)")
    }

    static func illegalTimestamp(_ detail: String) -> GatewayError {
        isv("IllegalTimestamp", "Invalid timestamp: \(detail)")
    }

    static func apiCallLimit(banSeconds: Int) -> GatewayError {
        isp("ApiCallLimit", "The request has exceeded the API call limit, this ban will last \(banSeconds) seconds")
    }
}

/// The pages proxies and load balancers answer with instead of JSON.
enum HTMLPages {
    static func status(_ status: Int, _ reason: String) -> [UInt8] {
        Array(
            """
            <html>
            <head><title>\(status) \(reason)</title></head>
            <body>
            <center><h1>\(status) \(reason)</h1></center>
            <hr><center>Tengine</center>
            </body>
            </html>

            """.utf8)
    }

    static let denied = Array(
        """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>Access denied</title></head>
        <body><h1>Sorry, we have detected unusual traffic from your network.</h1>
        <p>Please slide to verify that you are not a robot.</p></body></html>

        """.utf8)
}
