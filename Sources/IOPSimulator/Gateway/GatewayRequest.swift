import IOPGateway

/// One HTTP request as the gateway logic sees it: no NIO types, so the logic
/// can be exercised without a socket.
struct GatewayRequest: Sendable {
    var method: String
    /// The path without the query, e.g. `/rest/auth/token/refresh`.
    var path: String
    /// The query's and the body's parameters and files (``IOPGateway/IOPForm``).
    let form: IOPForm
    /// Why the body could not be read, when it could not: the gateway answers
    /// 400, and ``form`` then holds the query's parameters alone.
    let formError: IOPFormError?
    var bodyTooLarge: Bool

    /// Text parameters by name; where a name appears twice, the first value
    /// wins (the query before the body).
    let parameters: [String: String]

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
        do {
            form = try IOPForm.decode(query: query, contentType: contentType, body: body)
            formError = nil
        } catch {
            formError = error
            form = (try? IOPForm.decode(query: query, contentType: nil, body: [])) ?? IOPForm()
        }
        parameters = form.parameters
    }
}
