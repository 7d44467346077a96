import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import TokenKeeperTesting

/// A real webhook receiver on loopback (Hummingbird): keeps what came, with
/// its headers, and checks the older `X-Tokenkeeper-Signature` against the
/// shared secret; the Standard Webhooks headers are judged by the
/// standard's reference library (``standardWebhooksVerdicts()``).
/// It can be stopped and started again on the same port, as a receiver that
/// is down for a while.
final class WebhookReceiver: @unchecked Sendable {
    struct Delivery: Sendable {
        var body: String
        var signatureValid: Bool
        /// Every header, by lowercase name.
        var headers: [String: String] = [:]

        var object: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
        }

        var id: String? { object["id"] as? String }
        var kind: String? { object["kind"] as? String }
        var sellerID: String? { object["seller_id"] as? String }
    }

    let secret: String
    /// How long each answer is held back (a slow receiver); what came is recorded at once.
    let answerDelay: Duration
    /// Answers 503 to this many deliveries first (a receiver that refuses for a while).
    private var refusalsLeft: Int
    private let lock = NSLock()
    private var received: [Delivery] = []
    private var task: Task<Void, any Error>?
    private(set) var port = 0

    init(secret: String, answerDelay: Duration = .zero, refusing refusals: Int = 0) {
        self.secret = secret
        self.answerDelay = answerDelay
        self.refusalsLeft = refusals
    }

    var deliveries: [Delivery] { lock.withLock { received } }
    var url: String { "http://127.0.0.1:\(port)/hook" }

    static func expectedSignature(_ body: [UInt8], secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// Listens on `port` (0: any free one); returns once it accepts connections.
    func start(port: Int = 0) async throws {
        let router = Router()
        router.post("hook") { [self] request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 1 << 20)
            let bytes = Array(buffer.readableBytesView)
            let signature = request.headers[HTTPField.Name("X-Tokenkeeper-Signature")!] ?? ""
            let body = String(decoding: bytes, as: UTF8.self)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            let delivery = Delivery(
                body: body, signatureValid: signature == Self.expectedSignature(bytes, secret: secret),
                headers: headers)
            let refuse = lock.withLock {
                received.append(delivery)
                guard refusalsLeft > 0 else { return false }
                refusalsLeft -= 1
                return true
            }
            if answerDelay > .zero { try? await Task.sleep(for: answerDelay) }
            return Response(status: refuse ? .serviceUnavailable : .ok)
        }
        let (bound, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "webhook-receiver")
        logger.logLevel = .critical  // a stop cancels its channels: not worth a line
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        task = Task { try await app.run() }
        for await value in bound {
            self.port = value
            break
        }
    }

    /// Each delivery as `standardwebhooks.Webhook(secret).verify(body,
    /// headers)` (PyPI `standardwebhooks`, the standard's reference library)
    /// judges it: nil when verified, else the library's error. A secret that
    /// starts with `whsec_` is given as the string (the standard's base64
    /// key); any other as its bytes.
    func standardWebhooksVerdicts() throws -> [String?] {
        let script = """
            import json, sys
            from standardwebhooks.webhooks import Webhook
            job = json.load(sys.stdin)
            secret = job["secret"]
            hook = Webhook(secret if secret.startswith("whsec_") else secret.encode())
            verdicts = []
            for d in job["deliveries"]:
                try:
                    hook.verify(d["body"].encode(), d["headers"])
                    verdicts.append(None)
                except Exception as error:
                    verdicts.append(type(error).__name__ + ": " + str(error))
            print(json.dumps(verdicts))
            """
        let job: [String: Any] = [
            "secret": secret, "deliveries": deliveries.map { ["body": $0.body, "headers": $0.headers] },
        ]
        let output = try TestPython.run(script, input: try JSONSerialization.data(withJSONObject: job))
        guard let verdicts = try JSONSerialization.jsonObject(with: output) as? [Any] else {
            throw TestPython.Failure(description: "standardwebhooks: no verdicts")
        }
        return verdicts.map { $0 as? String }
    }

    func stop() async {
        task?.cancel()
        _ = try? await task?.value
        task = nil
    }
}

/// One HTTP GET as a browser makes it, redirects not followed, so each hop can be checked.
enum Browser {
    struct Page {
        var status: Int
        var location: String?
        var body: String
    }

    static func get(_ url: String) async throws -> Page {
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 4 << 20)
            let page = Page(
                status: Int(response.status.code), location: response.headers.first(name: "location"),
                body: String(buffer: body))
            try await client.shutdown()
            return page
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// A TCP port free at this moment on loopback, outside the kernel's
/// ephemeral range (see ``LoopbackPort``).
func freePort() throws -> Int {
    try LoopbackPort.free()
}
