import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import SQLiteStore
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Somewhere events are delivered: the exec hook or the webhook. One attempt
/// per call; the notifier owns retries and their backoff.
protocol NotificationChannel: Sendable {
    /// The channel's name in keeper.db's `deliveries` and in metrics.
    var name: String { get }
    /// Delivers `payload` (the event's JSON). Returns nil on success, else
    /// what went wrong, for the log and `status` (never a secret).
    func deliver(payload: String, delivery: PendingDelivery) async -> String?
    func shutdown() async
}

/// `notify.command`: runs the program (no shell) with the event's JSON on
/// stdin and `TOKENKEEPER_EVENT`, `TOKENKEEPER_EVENT_ID`,
/// `TOKENKEEPER_SELLER_ID`, `TOKENKEEPER_APP` in its environment. Exit 0 is success; anything
/// else, or running past the timeout (the program is then killed), is a
/// failure to be retried.
struct ExecHookChannel: NotificationChannel {
    let command: [String]
    let timeout: Duration
    /// The daemon's environment, passed on (less what only tokenkeeper may see).
    let environment: [String: String]

    var name: String { "command" }

    /// Variables the hook never inherits: systemd's (credentials, sd_notify).
    static let withheld: Set<String> = ["CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]

    /// The daemon's environment less what the hook must not see: systemd's
    /// variables and every secret that may be set for the daemon (an app's
    /// secret, `TOKENKEEPER_APP_SECRET` or `TOKENKEEPER_APPS_<NAME>_SECRET`,
    /// and any password), by name rather than by list, so that a secret
    /// variable added later is withheld too.
    static func inherited(from environment: [String: String]) -> [String: String] {
        environment.filter { name, _ in
            if withheld.contains(name) { return false }
            guard name.hasPrefix("TOKENKEEPER_") else { return true }
            return !name.hasSuffix("_SECRET") && !name.contains("PASSWORD") && !name.contains("_SECRET_")
        }
    }

    init(command: [String], timeout: Duration, environment: [String: String]) {
        self.command = command
        self.timeout = timeout
        self.environment = environment
        // A hook that exits without reading its stdin makes the write below
        // fail; with SIGPIPE at its default that would end the daemon.
        signal(SIGPIPE, SIG_IGN)
    }

    func deliver(payload: String, delivery: PendingDelivery) async -> String? {
        let event = delivery.event
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var environment = Self.inherited(from: self.environment)
        environment["TOKENKEEPER_EVENT"] = event.kind.rawValue
        environment["TOKENKEEPER_EVENT_ID"] = delivery.uid
        environment["TOKENKEEPER_SELLER_ID"] = event.sellerID ?? ""
        environment["TOKENKEEPER_APP"] = event.app?.rawValue ?? ""
        process.environment = environment
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        let (exits, exited) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { finished in
            exited.yield(
                finished.terminationReason == .uncaughtSignal ? -finished.terminationStatus : finished.terminationStatus
            )
            exited.finish()
        }
        do {
            try process.run()
        } catch {
            return "\(command[0]) could not be started: \(error.localizedDescription)"
        }
        // The JSON is far smaller than a pipe's buffer: this write does not
        // block. A hook that does not read it (EPIPE) is no failure: it has
        // the event in its environment, and its exit status decides.
        try? input.fileHandleForWriting.write(contentsOf: Data((payload + "\n").utf8))
        try? input.fileHandleForWriting.close()
        let pid = process.processIdentifier
        let status = await withTaskGroup(of: Int32?.self) { group in
            group.addTask {
                for await status in exits { return status }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            if first == nil {
                // Timed out: TERM, then KILL if it lingers; reap it either way.
                // Its process group too (Foundation starts the hook in one of
                // its own), so that no child of a shell script lingers.
                Self.send(SIGTERM, toGroupOf: pid)
                try? await Task.sleep(for: .seconds(2))
                if process.isRunning { Self.send(SIGKILL, toGroupOf: pid) }
            }
            group.cancelAll()
            return first
        }
        guard let status else {
            return "\(command[0]) ran longer than notify.command_timeout_seconds (\(timeout)) and was killed"
        }
        if status == 0 { return nil }
        return status < 0
            ? "\(command[0]) was killed by signal \(-status)" : "\(command[0]) exited with status \(status)"
    }

    func shutdown() async {}

    private static func send(_ signal: Int32, toGroupOf pid: Int32) {
        if getpgid(pid) == pid {
            kill(-pid, signal)
        } else {
            kill(pid, signal)
        }
    }
}

/// `notify.webhook_url`: a `POST` of the event's JSON, signed as the
/// Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`: ``WebhookSigning``), and with the older
/// `X-Tokenkeeper-Signature: sha256=<hex HMAC-SHA256 of the body>` for
/// receivers written for it. A 2xx answer is success; anything else is
/// retried, with the same `webhook-id` and a new timestamp. Redirects are
/// not followed.
struct WebhookChannel: NotificationChannel {
    let url: String
    let secret: Secret
    let timeout: Duration
    let clock: any WallClock
    private let client: HTTPClient
    private let signing: WebhookSigning

    var name: String { "webhook" }

    init(url: String, secret: Secret, timeout: Duration, clock: any WallClock = SystemWallClock()) {
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock
        self.signing = WebhookSigning(secret: secret)
        // A client of its own: a slow receiver never takes a connection the
        // gateway calls need.
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(5))
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
    static func signature(of body: String, secret: Secret) -> String {
        let key = SymmetricKey(data: Data(secret.exposedValue.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: key)
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    func deliver(payload: String, delivery: PendingDelivery) async -> String? {
        let event = delivery.event
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "tokenkeeper/\(TokenKeeperVersion.current)")
        request.headers.add(name: "X-Tokenkeeper-Event", value: event.kind.rawValue)
        request.headers.add(name: "X-Tokenkeeper-Event-Id", value: delivery.uid)
        request.headers.add(name: "X-Tokenkeeper-Signature", value: Self.signature(of: payload, secret: secret))
        let timestamp = clock.now().millisecondsSince1970 / 1000
        request.headers.add(name: "webhook-id", value: delivery.uid)
        request.headers.add(name: "webhook-timestamp", value: "\(timestamp)")
        request.headers.add(
            name: "webhook-signature", value: signing.signature(id: delivery.uid, timestamp: timestamp, body: payload))
        request.body = .bytes(ByteBuffer(string: payload))
        do {
            let response = try await client.execute(request, timeout: TimeAmount(timeout))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            return (200..<300).contains(code) ? nil : "the webhook answered HTTP \(code)"
        } catch {
            return "the webhook could not be reached: \(error)"
        }
    }

    func shutdown() async {
        try? await client.shutdown()
    }
}

/// Standard Webhooks signing (https://www.standardwebhooks.com): `v1,` and
/// the base64 HMAC-SHA256 of `id.timestamp.body`. A secret that starts with
/// `whsec_` is the standard's base64 key; any other is used as its bytes.
struct WebhookSigning: Sendable {
    static let standardPrefix = "whsec_"
    private let key: SymmetricKey

    init(secret: Secret) {
        key = Self.key(for: secret) ?? SymmetricKey(data: Data(secret.exposedValue.utf8))
    }

    /// The key a `whsec_` secret stands for; nil when the rest is not base64
    /// of at least 16 bytes. For any other secret, its bytes.
    static func key(for secret: Secret) -> SymmetricKey? {
        let text = secret.exposedValue
        guard text.hasPrefix(standardPrefix) else { return SymmetricKey(data: Data(text.utf8)) }
        var base64 = String(text.dropFirst(standardPrefix.count))
        while base64.count % 4 != 0 { base64 += "=" }  // the standard's libraries take it unpadded too
        guard let bytes = Data(base64Encoded: base64), bytes.count >= 16
        else { return nil }
        return SymmetricKey(data: bytes)
    }

    /// The `webhook-signature` header's value.
    func signature(id: String, timestamp: Int64, body: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).\(body)".utf8), using: key)
        return "v1," + Data(mac).base64EncodedString()
    }
}
