/// One HTTP request as the gateway logic sees it: no NIO types, so the logic
/// can be exercised without a socket.
struct GatewayRequest: Sendable {
    var method: String
    /// The path without the query, e.g. `/rest/auth/token/refresh`.
    var path: String
    /// Query-string and form-body parameters, decoded. Where a key appears
    /// twice, the first value wins (the query before the body).
    var parameters: [String: String]
    var bodyTooLarge: Bool

    init(method: String, uri: String, contentType: String?, body: [UInt8], bodyTooLarge: Bool) {
        self.method = method
        self.bodyTooLarge = bodyTooLarge
        let query: Substring
        if let mark = uri.firstIndex(of: "?") {
            path = String(uri[..<mark])
            query = uri[uri.index(after: mark)...]
        } else {
            path = uri
            query = ""
        }
        var parameters: [String: String] = [:]
        for pair in FormDecoding.pairs(query) where parameters[pair.key] == nil {
            parameters[pair.key] = pair.value
        }
        // The vendor's SDKs send a form body; a body of another type carries no
        // parameters the gateway reads.
        let isForm = contentType.map { $0.lowercased().contains("application/x-www-form-urlencoded") } ?? true
        if isForm, !body.isEmpty {
            let text = String(decoding: body, as: UTF8.self)
            for pair in FormDecoding.pairs(text[...]) where parameters[pair.key] == nil {
                parameters[pair.key] = pair.value
            }
        }
        self.parameters = parameters
    }
}
