import Foundation
import TokenKeeperCore

/// The gateway's base URL, checked once and split into the parts the request
/// builder and the authorization URL need.
struct GatewayEndpoint: Sendable, Equatable {
    /// `http` or `https`.
    var scheme: String
    /// The host as it goes into a URL (an IPv6 literal keeps its brackets).
    var host: String
    var port: Int?
    /// The REST root without a trailing slash, e.g. `/rest` (may be empty).
    var basePath: String

    /// `scheme://host[:port]`, the origin that also serves `/oauth/authorize`.
    var origin: String {
        "\(scheme)://\(host)" + (port.map { ":\($0)" } ?? "")
    }

    /// - Parameters:
    ///   - baseURL: The URL to check.
    ///   - name: What the URL is, for the error message.
    init(baseURL: String, name: String = "gateway URL") throws(GatewayFailure) {
        func invalid(_ why: String) -> GatewayFailure {
            GatewayFailure(
                .configuration, code: IOPFailureCode.invalidConfiguration,
                message: "\(name) \"\(baseURL)\" \(why)")
        }
        guard let components = URLComponents(string: baseURL) else { throw invalid("is not a URL") }
        guard let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw invalid("must start with https:// (or http:// for a local simulator)")
        }
        guard let host = components.percentEncodedHost, !host.isEmpty else { throw invalid("has no host") }
        guard components.percentEncodedQuery == nil, components.percentEncodedFragment == nil else {
            throw invalid("must not have a query or fragment")
        }
        guard components.percentEncodedUser == nil, components.percentEncodedPassword == nil else {
            throw invalid("must not hold credentials")
        }
        self.scheme = scheme
        // URLComponents drops the brackets of an IPv6 literal on some platforms.
        self.host = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        self.port = components.port
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        self.basePath = path
    }

    /// The full URL of an API, e.g. `https://api-sg.aliexpress.com/rest/auth/token/refresh`.
    func url(apiPath: String) -> String {
        origin + basePath + apiPath
    }
}
