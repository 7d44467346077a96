import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads one HTTP request at a time (the pipelining handler in front queues
/// the rest), asks the gateway logic what to do, and does it: answer now,
/// answer later, or reset the connection.
final class SimulatorHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private struct HeldAnswer {
        var answer: GatewayAnswer
        var version: HTTPVersion
        var keepAlive: Bool
        var timer: Scheduled<Void>
    }

    private let core: SimulatorCore
    private var requestHead: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    private var held: HeldAnswer?
    private var context: ChannelHandlerContext?

    init(core: SimulatorCore) {
        self.core = core
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        abandonHeldAnswer()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        abandonHeldAnswer()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            requestHead = head
            body.removeAll(keepingCapacity: true)
            bodyTooLarge = false
        case .body(let buffer):
            if bodyTooLarge || body.count + buffer.readableBytes > core.maxRequestBodyBytes {
                bodyTooLarge = true
                body.removeAll()
            } else {
                body.append(contentsOf: buffer.readableBytesView)
            }
        case .end:
            guard let head = requestHead else { return }
            requestHead = nil
            let request = GatewayRequest(
                method: head.method.rawValue, uri: head.uri, contentType: head.headers.first(name: "content-type"),
                body: body, bodyTooLarge: bodyTooLarge)
            body.removeAll(keepingCapacity: true)
            let answer = core.answer(request)
            let keepAlive = head.isKeepAlive && !answer.closesConnection
            if answer.delay > .zero {
                hold(answer, version: head.version, keepAlive: keepAlive, context: context)
            } else {
                send(answer, version: head.version, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func hold(_ answer: GatewayAnswer, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(answer.delay)) {
            self.sendHeldAnswer()
        }
        held = HeldAnswer(answer: answer, version: version, keepAlive: keepAlive, timer: timer)
        let eventLoop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        core.hold(answer.ticket.number) {
            eventLoop.execute { handler.value.sendHeldAnswer() }
        }
    }

    private func sendHeldAnswer() {
        guard let held, let context else { return }
        self.held = nil
        held.timer.cancel()
        core.unhold(held.answer.ticket.number)
        send(held.answer, version: held.version, keepAlive: held.keepAlive, context: context)
    }

    /// The connection went away with an answer still held: its tokens (if any)
    /// were never handed out.
    private func abandonHeldAnswer() {
        guard let held else { return }
        self.held = nil
        held.timer.cancel()
        core.unhold(held.answer.ticket.number)
        core.finish(held.answer.ticket, delivered: false)
    }

    private func send(_ answer: GatewayAnswer, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        let channel = context.channel
        switch answer.action {
        case .reset:
            core.finish(answer.ticket, delivered: false)
            // SO_LINGER 0 makes close() send a TCP RST, as a crashed proxy does,
            // instead of an orderly FIN.
            if let provider = channel as? any SocketOptionProvider {
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                    channel.close(promise: nil)
                }
            } else {
                context.close(promise: nil)
            }
        case .redirect(let location):
            var headers = HTTPHeaders()
            headers.add(name: "Location", value: location)
            respond(
                status: 302, contentType: "text/plain", body: [], extraHeaders: headers, answer: answer,
                version: version, keepAlive: keepAlive, context: context)
        case .respond(let status, let contentType, let body):
            respond(
                status: status, contentType: contentType, body: body, extraHeaders: HTTPHeaders(), answer: answer,
                version: version, keepAlive: keepAlive, context: context)
        }
    }

    private func respond(
        status: Int, contentType: String, body: [UInt8], extraHeaders: HTTPHeaders, answer: GatewayAnswer,
        version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext
    ) {
        let channel = context.channel
        var headers = extraHeaders
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Date", value: answer.date)
        headers.add(name: "Server", value: "IOPSimulator")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(channel.allocator.buffer(bytes: body)))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        let core = self.core
        let ticket = answer.ticket
        written.futureResult.whenComplete { result in
            switch result {
            case .success: core.finish(ticket, delivered: true)
            case .failure: core.finish(ticket, delivered: false)
            }
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
