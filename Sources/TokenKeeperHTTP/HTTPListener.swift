import HTTPTypes
public import Hummingbird
import HummingbirdCore
public import Logging
import NIOCore
import NIOHTTPTypes
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
    public static func router(_ routes: [HTTPRoute], maxURLLength: Int = 8192) -> Router<BasicRequestContext> {
        let router = Router()
        for route in routes {
            router.get(RouterPath(route.path)) { request, _ -> Response in
                guard request.uri.string.utf8.count <= maxURLLength else {
                    return response(.page(414, "The link is too long: use the one tokenkeeper made."))
                }
                var query: [String: String] = [:]
                for (key, value) in request.uri.queryParameters {
                    query[String(key)] = String(value)
                }
                return response(await route.handle(query))
            }
        }
        return router
    }

    /// What a listener allows a stranger: every listener is assumed to face
    /// the internet (the callback does).
    public struct Limits: Sendable, Equatable {
        /// Connections open at once; more wait in the kernel's backlog, and
        /// take none of the process's descriptors.
        public var maxConnections: Int
        /// A whole request must arrive within this, from the connection's
        /// start or the previous answer's end (a request sent a byte at a
        /// time, an idle keep-alive, a body that never ends are closed).
        public var requestDeadline: Duration
        /// The request line's URL.
        public var maxURLLength: Int
        /// One header field, all of them, and how many.
        public var maxHeaderFieldSize: Int
        public var maxHeaderListSize: Int
        public var maxHeaderFieldCount: Int

        public init(
            maxConnections: Int = 256, requestDeadline: Duration = .seconds(10), maxURLLength: Int = 8192,
            maxHeaderFieldSize: Int = 8192, maxHeaderListSize: Int = 16384, maxHeaderFieldCount: Int = 64
        ) {
            self.maxConnections = maxConnections
            self.requestDeadline = requestDeadline
            self.maxURLLength = maxURLLength
            self.maxHeaderFieldSize = maxHeaderFieldSize
            self.maxHeaderListSize = maxHeaderListSize
            self.maxHeaderFieldCount = maxHeaderFieldCount
        }
    }

    /// A listener on `host:port` serving `routes`.
    /// - Parameters:
    ///   - name: Names the listener in logs ("callback", "metrics").
    ///   - onBound: Called with the bound port once the socket listens.
    public static func make(
        name: String, host: String, port: Int, routes: [HTTPRoute], limits: Limits = Limits(), logger: Logger,
        onBound: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some Service {
        make(
            name: name, address: .tcp(host: host, port: port),
            router: router(routes, maxURLLength: limits.maxURLLength),
            limits: limits, logger: logger, onBound: onBound)
    }

    /// Where a listener listens.
    public enum Address: Sendable, Equatable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        /// A Unix socket made with `mode` and, when given, owned by `group`
        /// (a stale socket left by an earlier run is removed first).
        case unix(path: String, mode: UInt16, group: String?)

        public var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unix(let path, _, _): "unix:\(path)"
            }
        }
    }

    /// A listener on `address` answering with `router`.
    public static func make(
        name: String, address: Address, router: Router<BasicRequestContext>, limits: Limits = Limits(),
        logger: Logger, onBound: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some Service {
        let deadline = TimeAmount.nanoseconds(
            limits.requestDeadline.components.seconds * 1_000_000_000
                + limits.requestDeadline.components.attoseconds / 1_000_000_000)
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestDeadlineHandler(deadline: deadline)],
            idleTimeout: deadline * 3,
            httpDecoderConfiguration: .init(
                maxHeaderFieldSize: limits.maxHeaderFieldSize, maxHeaderListSize: limits.maxHeaderListSize,
                maxHeaderFieldCount: limits.maxHeaderFieldCount))
        let bindAddress: BindAddress
        switch address {
        case .tcp(let host, let port): bindAddress = .hostname(host, port: port)
        case .unix(let path, _, _):
            UnixSocketFile.removeStale(at: path, logger: logger)
            bindAddress = .unixDomainSocket(path: path)
        }
        return Application(
            router: router,
            server: .http1(configuration: http1),
            configuration: ApplicationConfiguration(
                address: bindAddress, serverName: nil,
                availableConnectionsDelegate: MaximumAvailableConnections(limits.maxConnections, logger: logger)),
            onServerRunning: { channel in
                switch address {
                case .tcp(let host, let port):
                    let bound = channel.localAddress?.port ?? port
                    logger.notice(
                        "\(name) listener ready", metadata: ["address": "\(Address.tcp(host: host, port: bound))"])
                    await onBound(bound)
                case .unix(let path, let mode, let group):
                    UnixSocketFile.restrict(path, mode: mode, group: group, logger: logger)
                    logger.notice("\(name) listener ready", metadata: ["address": "\(address)"])
                    await onBound(0)
                }
            },
            logger: logger)
    }

    static func response(_ reply: HTTPReply) -> Response {
        var headers: HTTPFields = [
            .contentType: reply.contentType, .cacheControl: "no-store",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        ]
        for (name, value) in reply.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(
            status: HTTPResponse.Status(code: reply.status), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(string: reply.body)))
    }
}

/// Closes a connection on which a whole request has not arrived within
/// `deadline` of the connection's start or of the previous answer's end:
/// a request sent a byte at a time (slowloris), a keep-alive connection
/// left idle, a body that never ends. The time to answer is not counted.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let deadline: TimeAmount
    private var timer: Scheduled<Void>?

    init(deadline: TimeAmount) {
        self.deadline = deadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        arm(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) {
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { arm(context) }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: deadline) { bound.value.close(promise: nil) }
    }
}
