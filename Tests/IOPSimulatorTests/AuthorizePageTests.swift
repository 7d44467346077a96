import AsyncHTTPClient
import Foundation
import IOPGateway
import IOPSimulator
import NIOCore
import NIOHTTP1
import Testing
import TokenKeeperCore

/// `/oauth/authorize`: after the seller logs in, the page sends the browser
/// to the redirect URI with a fresh one-use code and the state, unchanged.
@Suite("/oauth/authorize")
struct AuthorizePageTests {
    static func open(_ url: String) async throws -> (status: Int, location: String?) {
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        defer { _ = client.shutdown() }
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 16)
        return (Int(response.status.code), response.headers.first(name: "location"))
    }

    @Test func redirectsWithAFreshCodeAndTheStateToTheRedirectURI() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(SimulatedSeller(sellerID: "1001"))
            h.simulator.updateBehavior { $0.loggedInSeller = "1001" }
            let url = try AuthorizationURL.make(
                gatewayBaseURL: h.simulator.baseURL!, appKey: SimulatorHarness.appKey,
                redirectURI: "https://tokens.example.com/cb?x=1", state: "s.t-a_te")
            let (status, location) = try await Self.open(url)
            #expect(status == 302)
            let target = try #require(location.flatMap(URLComponents.init(string:)))
            #expect(target.host == "tokens.example.com" && target.path == "/cb")
            let items = Dictionary(uniqueKeysWithValues: (target.queryItems ?? []).map { ($0.name, $0.value ?? "") })
            #expect(items["x"] == "1")
            #expect(items["state"] == "s.t-a_te")
            let code = try #require(items["code"])
            let answer = try await h.gateway.create(code: code)
            #expect(answer.isSuccess && answer.string("seller_id") == "1001")
            #expect(h.simulator.counters.authorizations == 1)
            let second = try await Self.open(url)
            #expect(second.location != location, "a fresh code each time")
        }
    }

    @Test func refusesAnUnknownAppNoSellerOrABadRedirect() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(SimulatedSeller(sellerID: "1001"))
            let origin = h.simulator.baseURL!.replacingOccurrences(of: "/rest", with: "")
            let good =
                "response_type=code&client_id=\(SimulatorHarness.appKey)&redirect_uri=https%3A%2F%2Fx.example%2Fcb"
            let nobody = try await Self.open(origin + "/oauth/authorize?" + good)
            #expect(nobody.status == 400, "nobody logged in")
            let named = try await Self.open(origin + "/oauth/authorize?" + good + "&seller_id=1001")
            #expect(named.status == 302)
            let unknown = try await Self.open(origin + "/oauth/authorize?" + good + "&seller_id=9999")
            #expect(unknown.status == 400)
            let otherApp = good.replacingOccurrences(of: SimulatorHarness.appKey, with: "111")
            let foreign = try await Self.open(origin + "/oauth/authorize?" + otherApp + "&seller_id=1001")
            #expect(foreign.status == 400)
            let badRedirect =
                "response_type=code&client_id=\(SimulatorHarness.appKey)&redirect_uri=javascript%3Ax&seller_id=1001"
            let refused = try await Self.open(origin + "/oauth/authorize?" + badRedirect)
            #expect(refused.status == 400)
        }
    }
}
