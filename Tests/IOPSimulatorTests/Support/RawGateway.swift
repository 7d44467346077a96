import AsyncHTTPClient
import Foundation
import IOPGateway
import IOPSimulator
import Logging
import NIOCore
import NIOHTTP1
import TokenKeeperCore
import TokenKeeperTesting

/// An answer as it came over the wire.
///
/// Its description never shows the body, which may hold tokens: a failed
/// expectation prints its operands, and test output must stay free of tokens.
/// Expectations use ``contains(_:)`` and the field accessors, not ``text``.
struct RawAnswer: Sendable, CustomStringConvertible {
    var status: Int
    var contentType: String?
    var date: String?
    var text: String

    var description: String {
        "HTTP \(status) \(contentType ?? "-"), \(text.utf8.count) bytes, code \(errorCode ?? (isSuccess ? "0" : "-"))"
    }

    func contains(_ fragment: String) -> Bool { text.contains(fragment) }

    func hasPrefix(_ prefix: String) -> Bool { text.hasPrefix(prefix) }

    /// The body as a JSON object, or nil when it is not one.
    var object: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    /// The top-level error envelope's code (or the `error_response` one's).
    var errorCode: String? {
        guard let object else { return nil }
        if let inner = object["error_response"] as? [String: Any] { return inner["code"] as? String }
        return object["type"] != nil ? object["code"] as? String : nil
    }

    var errorType: String? {
        guard let object else { return nil }
        if let inner = object["error_response"] as? [String: Any] { return inner["type"] as? String }
        return object["type"] as? String
    }

    var errorMessage: String? {
        guard let object else { return nil }
        if let inner = object["error_response"] as? [String: Any] { return inner["msg"] as? String }
        return object["message"] as? String
    }

    /// A string field.
    func string(_ key: String) -> String? { object?[key] as? String }

    /// A numeric field, whether it came as a number or as a numeric string.
    func integer(_ key: String) -> Int64? {
        switch object?[key] {
        case let text as String: Int64(text)
        case let number as NSNumber: number.int64Value
        default: nil
        }
    }

    /// Whether a field came as a JSON string (rather than a number).
    func isString(_ key: String) -> Bool { object?[key] is String }

    var isSuccess: Bool {
        guard let object else { return false }
        return (object["code"] as? String) == "0" || (object["code"] as? NSNumber)?.intValue == 0
    }

    var accessToken: Secret? { string("access_token").map(Secret.init) }
    var refreshToken: Secret? { string("refresh_token").map(Secret.init) }
}

/// Signs and sends IOP calls by hand, so tests can also send them wrong.
struct RawGateway: Sendable {
    var baseURL: String
    var appKey: String
    var secret: String
    var clock: any WallClock
    /// Generous: a passing call answers in milliseconds, and a sanitizer
    /// build on a loaded machine must not fail for slowness alone.
    var timeout: Duration = .seconds(30)

    /// One call.
    /// - Parameters:
    ///   - api: The API path, e.g. `/auth/token/refresh`.
    ///   - parameters: API parameters (sent in a form body for POST, in the query for GET).
    ///   - method: `POST` or `GET`.
    ///   - timestamp: Overrides the signed timestamp.
    ///   - signMethod: Overrides `sign_method`.
    ///   - tamper: Changes the system parameters after signing (drop `app_key`, spoil `sign`).
    func call(
        _ api: String, _ parameters: [String: String], method: String = "POST", timestamp: Timestamp? = nil,
        signMethod: String = "sha256", signWith signingSecret: String? = nil,
        tamper: (inout [String: String]) -> Void = { _ in }
    ) async throws -> RawAnswer {
        var system = [
            "app_key": appKey,
            "timestamp": String((timestamp ?? clock.now()).millisecondsSince1970),
            "sign_method": signMethod,
            "partner_id": "simulator-tests",
        ]
        let signed = system.merging(parameters) { system, _ in system }
        system["sign"] = IOPSignature.sign(apiPath: api, parameters: signed, secret: signingSecret ?? secret)
        tamper(&system)
        var query = system
        var body = ""
        if method == "GET" {
            query.merge(parameters) { system, _ in system }
        } else {
            body = Self.form(parameters)
        }
        var request = HTTPClientRequest(url: baseURL + api + "?" + Self.form(query))
        request.method = HTTPMethod(rawValue: method)
        if method == "POST" {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded;charset=UTF-8")
            request.body = .bytes(ByteBuffer(string: body))
        }
        return try await send(request)
    }

    /// Sends a request to a path under the simulator's origin, as is.
    func get(path: String) async throws -> RawAnswer {
        let origin = baseURL.replacingOccurrences(of: "/rest", with: "")
        return try await send(HTTPClientRequest(url: origin + path))
    }

    func refresh(_ token: Secret) async throws -> RawAnswer {
        try await call("/auth/token/refresh", ["refresh_token": token.exposedValue])
    }

    func create(code: String) async throws -> RawAnswer {
        try await call("/auth/token/create", ["code": code])
    }

    func send(_ request: HTTPClientRequest) async throws -> RawAnswer {
        let response = try await HTTPClient.shared.execute(request, timeout: TimeAmount(timeout))
        let body = try await response.body.collect(upTo: 1 << 20)
        return RawAnswer(
            status: Int(response.status.code), contentType: response.headers.first(name: "content-type"),
            date: response.headers.first(name: "date"), text: String(buffer: body))
    }

    static func form(_ pairs: [String: String]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return pairs.sorted { $0.key < $1.key }.map { key, value in
            let k = key.addingPercentEncoding(withAllowedCharacters: allowed) ?? key
            let v = value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
            return "\(k)=\(v)"
        }.joined(separator: "&")
    }
}

/// A started simulator with a manual clock and a raw client, shut down after the body.
struct SimulatorHarness: Sendable {
    static let appKey = "500102"
    static let secret = "simulator-test-secret"

    let simulator: IOPSimulator
    let clock: ManualWallClock
    let gateway: RawGateway

    /// - Parameters:
    ///   - otherApps: App keys the gateway knows besides ``appKey``, with their secrets.
    ///   - answerShape: The shape of every app's answers but those in `answerShapesByApp`.
    static func run(
        seed: UInt64 = 7, otherApps: [String: String] = [:], answerShape: AnswerShape = .aliExpress,
        answerShapesByApp: [String: AnswerShape] = [:], configure: (inout GatewayBehavior) -> Void = { _ in },
        _ body: (SimulatorHarness) async throws -> Void
    ) async throws {
        let clock = ManualWallClock()
        var behavior = GatewayBehavior(
            apps: otherApps.mapValues(Secret.init).merging([appKey: Secret(secret)]) { _, harness in harness },
            accessTokenLifetime: .seconds(600), refreshTokenValidity: .seconds(3600))
        configure(&behavior)
        let simulator = IOPSimulator(
            configuration: SimulatorConfiguration(
                behavior: behavior, clock: clock, randomSeed: seed, answerShape: answerShape,
                answerShapesByApp: answerShapesByApp))
        let address = try await simulator.start()
        let harness = SimulatorHarness(
            simulator: simulator, clock: clock,
            gateway: RawGateway(baseURL: address.baseURL, appKey: appKey, secret: secret, clock: clock))
        do {
            try await body(harness)
        } catch {
            await simulator.shutdown()
            throw error
        }
        await simulator.shutdown()
    }

    /// A raw client of another app the gateway knows.
    func gateway(appKey: String, secret: String) -> RawGateway {
        RawGateway(baseURL: gateway.baseURL, appKey: appKey, secret: secret, clock: clock)
    }

    /// The real client (IOPGateway's) for an app, shut down after the body.
    func withClient(
        appKey: String = SimulatorHarness.appKey, secret: String = SimulatorHarness.secret,
        _ body: (IOPGatewayClient) async throws -> Void
    ) async throws {
        let client = IOPGatewayClient(
            configuration: GatewayConfiguration(
                baseURL: gateway.baseURL, appKey: appKey, appSecret: Secret(secret), requestTimeout: .seconds(10)),
            clock: clock, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        do {
            try await body(client)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    /// Adds a seller and seeds an enrolled pair for it.
    @discardableResult
    func enrolledSeller(_ id: String = "1001") throws -> IssuedTokenPair {
        simulator.addSeller(sellerID: id)
        return try simulator.seedTokens(for: id)
    }
}

/// Waits until `condition` holds, checking every few milliseconds, for at most `timeout`.
func waitUntil(
    timeout: Duration = .seconds(30), _ condition: @Sendable () -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}
