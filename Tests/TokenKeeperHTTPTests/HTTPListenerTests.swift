import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import TokenKeeperHTTP

/// The listeners' router, through Hummingbird's own test client, and one
/// listener over a real socket.
@Suite struct HTTPListenerTests {
    let routes = [
        HTTPRoute(path: "/aliexpress/callback") { query in
            .page(query["code"] == nil ? 400 : 200, "code=\(query["code"] ?? "-") state=\(query["state"] ?? "-")")
        },
        HTTPRoute(path: "/metrics") { _ in
            HTTPReply(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: "up 1\n")
        },
    ]

    @Test func routesGetTheirQueryDecodedAndAnswerPlainUncachedPages() async throws {
        let app = Application(router: HTTPListener.router(routes))
        try await app.test(.router) { client in
            let page = try await client.execute(uri: "/aliexpress/callback?code=a%2Bb&state=x.y", method: .get)
            #expect(page.status == .ok)
            #expect(String(buffer: page.body) == "code=a+b state=x.y\n")
            #expect(page.headers[.contentType] == "text/plain; charset=utf-8")
            #expect(page.headers[.cacheControl] == "no-store")
            #expect(page.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            let long = try await client.execute(
                uri: "/aliexpress/callback?code=" + String(repeating: "a", count: 9000), method: .get)
            #expect(long.status == .uriTooLong)
            let refused = try await client.execute(uri: "/aliexpress/callback", method: .get)
            #expect(refused.status == .badRequest)
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(metrics.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(try await client.execute(uri: "/elsewhere", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/metrics", method: .post).status != .ok, "GET only")
        }
    }

    @Test func aListenerServesOverARealSocket() async throws {
        let app = Application(
            router: HTTPListener.router(routes), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let page = try await client.execute(uri: "/aliexpress/callback?code=c1", method: .get)
            #expect(page.status == .ok)
            #expect(String(buffer: page.body).hasPrefix("code=c1"))
        }
    }
}
