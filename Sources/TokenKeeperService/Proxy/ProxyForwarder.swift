import AsyncHTTPClient
import Foundation
import IOPGateway
import NIOCore
import NIOHTTP1
import TokenKeeperHTTP

/// Sends proxied calls to the gateway and reads the answers whole.
final class ProxyForwarder: Sendable {
    /// The gateway's answer, and what the proxy reads of it.
    struct Answer: Sendable {
        var status: Int
        var reply: ForwardedReply
        /// The IOP error code, when the body is one of the gateway's errors.
        var code: String?
        var message: String?
    }

    /// The gateway's headers handed back to the client; hop-by-hop and
    /// length headers are the listener's own.
    static let passedHeaders: Set<String> = [
        "content-type", "content-encoding", "content-disposition", "content-language", "cache-control",
        "retry-after", "date", "etag", "last-modified",
    ]
    static let maxAnswerBytes = 64 << 20

    private let client: HTTPClient
    /// `proxy.timeout_seconds`: a call's whole time, the answer's body and a
    /// retry after a refresh included.
    let timeout: Duration

    init(timeout: Duration, connectTimeout: Duration) {
        var configuration = HTTPClient.Configuration(
            // A redirect would carry an access token somewhere else.
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: TimeAmount(connectTimeout), read: TimeAmount(timeout)))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        // A refused connection is answered at once (GatewayUnavailable); the
        // reader's SDK decides whether to try again.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        self.timeout = timeout
    }

    func shutdown() async {
        try? await client.shutdown()
    }

    /// Sends `form` to `url` and reads the answer whole by `deadline`: GET
    /// with the form in the query, POST with it as the body (multipart when
    /// it carries files). A gateway that has not answered whole by then
    /// (a body that trickles in included) is given up, the call cancelled.
    func send(_ form: IOPForm, to url: String, method: String, deadline: ContinuousClock.Instant)
        async throws(ForwardingError) -> Answer
    {
        let result = await withTaskGroup(of: Result<Answer, ForwardingError>?.self) { group in
            group.addTask {
                do throws(ForwardingError) {
                    return .success(try await self.send(form, to: url, method: method))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let result else { throw ForwardingError(description: "the call timed out (proxy.timeout_seconds)") }
        return try result.get()
    }

    private func send(_ form: IOPForm, to url: String, method: String) async throws(ForwardingError) -> Answer {
        var request: HTTPClientRequest
        if method == "GET" && form.files.isEmpty {
            let (_, body) = form.encoded(boundary: "")
            request = HTTPClientRequest(url: url + "?" + String(decoding: body, as: UTF8.self))
            request.method = .GET
        } else {
            let (contentType, body) = form.encoded(boundary: IOPForm.makeBoundary())
            request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        request.headers.add(name: "User-Agent", value: "tokenkeeper-proxy/\(TokenKeeperVersion.current)")
        do {
            let response = try await client.execute(request, timeout: TimeAmount(timeout))
            try Task.checkCancellation()
            let body = try await response.body.collect(upTo: Self.maxAnswerBytes)
            var headers: [ForwardedReply.Header] = []
            for header in response.headers where Self.passedHeaders.contains(header.name.lowercased()) {
                headers.append(.init(header.name, header.value))
            }
            let bytes = Array(buffer: body)
            let (code, message) = Self.errorCode(in: bytes)
            return Answer(
                status: Int(response.status.code),
                reply: ForwardedReply(status: Int(response.status.code), headers: headers, body: bytes), code: code,
                message: message)
        } catch {
            throw ForwardingError(description: Self.describe(error))
        }
    }

    /// The words in an answer that make the proxy read its code: a refused
    /// access token, and throttling.
    private static let watchedWords = [Array("IllegalAccessToken".utf8), Array("CallLimit".utf8)]

    /// The IOP error code and message of a JSON answer, read only when the
    /// body can be an error the proxy acts on (small, and naming one): the
    /// other answers pass unparsed.
    static func errorCode(in body: [UInt8]) -> (String?, String?) {
        guard body.count <= 64 << 10, watchedWords.contains(where: { contains(body, $0) }) else { return (nil, nil) }
        guard var object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return (nil, nil)
        }
        // AliExpress's /sync answers wrap their errors: {"error_response": {"code", "msg"}}.
        if object["code"] == nil, let wrapped = object["error_response"] as? [String: Any] {
            object = wrapped
            if object["message"] == nil { object["message"] = object["msg"] }
        }
        let code: String? =
            switch object["code"] {
            case let text as String: text
            case let number as NSNumber: number.stringValue
            default: nil
            }
        guard let code, code != "0" else { return (nil, nil) }
        return (code, object["message"] as? String)
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard let first = needle.first, haystack.count >= needle.count else { return false }
        let lastStart = haystack.count - needle.count
        var index = 0
        while index <= lastStart {
            if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "the call timed out"
            case .remoteConnectionClosed: return "the gateway closed the connection"
            default: return "HTTP client error (\(error.shortDescription))"
            }
        }
        return "the connection failed (\(type(of: error)))"
    }
}

struct ForwardingError: Error, CustomStringConvertible {
    var description: String
}
