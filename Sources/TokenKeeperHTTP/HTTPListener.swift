import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle

/// What a route answers: a status, a content type and a body (and extra
/// headers). Pages are plain text: a browser shows them, a person reads them.
public struct HTTPReply: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: String
    public var headers: [String: String]

    public init(
        status: Int, contentType: String = "text/plain; charset=utf-8", body: String, headers: [String: String] = [:]
    ) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    /// A plain page: the text and a newline.
    public static func page(_ status: Int, _ text: String) -> HTTPReply {
        HTTPReply(status: status, body: text + "\n")
    }
}

/// One `GET` route: the path and what it answers, given the query parameters.
public struct HTTPRoute: Sendable {
    public var path: String
    public var handle: @Sendable (_ query: [String: String]) async -> HTTPReply

    public init(path: String, handle: @escaping @Sendable (_ query: [String: String]) async -> HTTPReply) {
        self.path = path
        self.handle = handle
    }
}

/// Builds the HTTP listeners: one Hummingbird application per address, each a
/// swift-service-lifecycle `Service` for the daemon's `ServiceGroup`. The
/// service layer hands in the routes; this target knows HTTP, not stores.
public enum HTTPListener {
    /// The router for `routes`: `GET` (and `HEAD`) on each path, 404
    /// elsewhere, no caching of any answer.
    public static func router(_ routes: [HTTPRoute]) -> Router<BasicRequestContext> {
        let router = Router()
        for route in routes {
            router.get(RouterPath(route.path)) { request, _ -> Response in
                var query: [String: String] = [:]
                for (key, value) in request.uri.queryParameters {
                    query[String(key)] = String(value)
                }
                return response(await route.handle(query))
            }
        }
        return router
    }

    /// A listener on `host:port` serving `routes`.
    /// - Parameters:
    ///   - name: Names the listener in logs ("callback", "metrics").
    ///   - onBound: Called with the bound port once the socket listens.
    public static func make(
        name: String, host: String, port: Int, routes: [HTTPRoute], logger: Logger,
        onBound: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some Service {
        Application(
            router: router(routes),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? port
                logger.notice("\(name) listener ready", metadata: ["address": "\(host):\(bound)"])
                await onBound(bound)
            },
            logger: logger)
    }

    static func response(_ reply: HTTPReply) -> Response {
        var headers: HTTPFields = [.contentType: reply.contentType, .cacheControl: "no-store"]
        for (name, value) in reply.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(
            status: HTTPResponse.Status(code: reply.status), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(string: reply.body)))
    }
}
