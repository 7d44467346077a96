import HTTPTypes
public import Hummingbird
import NIOCore
import Synchronization

/// One request as a forwarding handler (the signing proxy) sees it: every
/// path, `GET` or `POST`, with its body read whole (up to a limit).
public struct ForwardedRequest: Sendable {
    public var method: String
    /// The path, without the query.
    public var path: String
    /// The query string, without `?`.
    public var query: String
    public var contentType: String?
    public var body: [UInt8]

    public init(method: String, path: String, query: String, contentType: String?, body: [UInt8]) {
        self.method = method
        self.path = path
        self.query = query
        self.contentType = contentType
        self.body = body
    }
}

/// What a forwarding handler answers: status, headers in order, body bytes.
public struct ForwardedReply: Sendable, Equatable {
    public var status: Int
    public var headers: [Header]
    public var body: [UInt8]

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(status: Int, headers: [Header], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why the listener refused a request before its handler saw it.
public enum ForwardingRefusal: Sendable, Equatable {
    /// The body is over the limit (by its length, or as it arrived).
    case bodyTooLarge
    /// The URL is over the limit.
    case urlTooLong
    /// As many requests as allowed are being answered.
    case busy
}

extension HTTPListener {
    /// A router handing every `GET` and `POST` to `handle`. At most
    /// `maxConcurrent` requests are read and answered at once (the rest are
    /// refused before their body is read: what a stranger can make the
    /// process hold is bounded by `maxConcurrent × maxBodyBytes`), and a body
    /// over `maxBodyBytes` is refused without being read further; `refuse`
    /// answers those, given the path.
    public static func forwardingRouter(
        maxBodyBytes: Int, maxConcurrent: Int, maxURLLength: Int = 8192,
        refuse: @escaping @Sendable (ForwardingRefusal, _ path: String) -> ForwardedReply,
        handle: @escaping @Sendable (ForwardedRequest) async -> ForwardedReply
    ) -> Router<BasicRequestContext> {
        let router = Router()
        let inFlight = Mutex(0)
        let responder: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            guard request.uri.string.utf8.count <= maxURLLength else {
                return response(refuse(.urlTooLong, "(too long)"))
            }
            let admitted = inFlight.withLock { count in
                guard count < maxConcurrent else { return false }
                count += 1
                return true
            }
            guard admitted else { return response(refuse(.busy, request.uri.path)) }
            defer { inFlight.withLock { $0 -= 1 } }
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
                return response(refuse(.bodyTooLarge, request.uri.path))
            }
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: maxBodyBytes)
            } catch {
                return response(refuse(.bodyTooLarge, request.uri.path))
            }
            let forwarded = ForwardedRequest(
                method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "",
                contentType: request.headers[.contentType], body: Array(buffer: body))
            return response(await handle(forwarded))
        }
        for method in [HTTPRequest.Method.get, .post] {
            router.on("**", method: method, use: responder)
            router.on("/", method: method, use: responder)
        }
        return router
    }

    static func response(_ reply: ForwardedReply) -> Response {
        var headers = HTTPFields()
        for header in reply.headers {
            if let name = HTTPField.Name(header.name) { headers.append(HTTPField(name: name, value: header.value)) }
        }
        headers[.cacheControl] = headers[.cacheControl] ?? "no-store"
        return Response(
            status: HTTPResponse.Status(code: reply.status), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: reply.body)))
    }
}
