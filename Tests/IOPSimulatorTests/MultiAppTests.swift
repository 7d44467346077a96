import Foundation
import IOPGateway
import IOPSimulator
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// One gateway, several apps: each request is checked with its own app's
/// secret, sellers may belong to one app, and every count is kept per app.
@Suite("Several apps on one gateway")
struct MultiAppTests {
    static let otherAppKey = "600200"
    static let otherSecret = "the-other-apps-secret"

    private static func run(_ body: (SimulatorHarness) async throws -> Void) async throws {
        try await SimulatorHarness.run(otherApps: [otherAppKey: otherSecret], body)
    }

    @Test func eachRequestIsVerifiedWithTheSecretOfItsOwnAppKey() async throws {
        try await Self.run { h in
            h.simulator.addSeller(sellerID: "1001")
            let code = try h.simulator.issueAuthorizationCode(for: "1001")
            let signedWithTheFirstAppsSecret = h.gateway(appKey: Self.otherAppKey, secret: SimulatorHarness.secret)
            let refused = try await signedWithTheFirstAppsSecret.create(code: code)
            #expect(refused.errorCode == "IncompleteSignature")

            try await h.withClient(appKey: Self.otherAppKey, secret: Self.otherSecret) { client in
                let grant = try await client.createToken(code: code)
                #expect(grant.sellerID == "1001")
            }
            #expect(h.simulator.counters(forApp: Self.otherAppKey).rejections("IncompleteSignature") == 1)
            #expect(h.simulator.counters(forApp: Self.otherAppKey).codeExchanges == 1)
            #expect(h.simulator.counters(forApp: SimulatorHarness.appKey) == SimulatorCounters())
        }
    }

    @Test func aSellerIDUnderTwoAppKeysIsTwoSellersWithTheirOwnTokens() async throws {
        try await Self.run { h in
            let first = SimulatorHarness.appKey
            let other = Self.otherAppKey
            h.simulator.addSeller(sellerID: "1001", appKey: first)
            h.simulator.addSeller(sellerID: "1001", appKey: other)
            #expect(h.simulator.sellerIDs == ["1001"])
            #expect(h.simulator.sellerIDs(forApp: other) == ["1001"])
            #expect(throws: IOPSimulatorError.ambiguousSeller("1001", appKeys: [first, other].sorted())) {
                try h.simulator.issueAuthorizationCode(for: "1001")
            }

            let firstPair = try h.simulator.seedTokens(for: "1001", appKey: first)
            let otherPair = try h.simulator.seedTokens(for: "1001", appKey: other)
            #expect(firstPair.refreshToken != otherPair.refreshToken)
            #expect(firstPair.appKey == first && otherPair.appKey == other)

            try await h.withClient(appKey: other, secret: Self.otherSecret) { client in
                let rotated = try await client.refresh(refreshToken: otherPair.refreshToken)
                #expect(rotated.sellerID == "1001")
                #expect(rotated.refreshToken == h.simulator.currentRefreshToken(for: "1001", appKey: other))
            }
            #expect(h.simulator.currentRefreshToken(for: "1001", appKey: first) == firstPair.refreshToken)
            #expect(h.simulator.sellerStats(for: "1001", appKey: other)?.rotations == 1)
            #expect(h.simulator.sellerStats(for: "1001", appKey: first)?.rotations == 0)
        }
    }

    @Test func anAppCannotUseTheCodesOrTokensOfAnotherAppsSeller() async throws {
        try await Self.run { h in
            h.simulator.addSeller(sellerID: "1001", appKey: SimulatorHarness.appKey)
            let pair = try h.simulator.seedTokens(for: "1001")
            let code = try h.simulator.issueAuthorizationCode(for: "1001")
            let other = h.gateway(appKey: Self.otherAppKey, secret: Self.otherSecret)

            #expect(try await other.refresh(pair.refreshToken).errorCode == "IllegalRefreshToken")
            #expect(try await other.create(code: code).errorCode == "InvalidCode")
            // Neither was consumed: the seller's own app still uses both.
            #expect(h.simulator.currentRefreshToken(for: "1001") == pair.refreshToken)
            #expect(try await h.gateway.create(code: code).isSuccess)
            #expect(h.simulator.counters.refreshTokenReuses == 0)
            #expect(h.simulator.counters.codeReuses == 0)
        }
    }

    @Test func aSellerOpenToEveryAppServesEachOfThem() async throws {
        try await Self.run { h in
            let pair = try h.enrolledSeller()
            let other = h.gateway(appKey: Self.otherAppKey, secret: Self.otherSecret)
            let first = try await h.gateway.refresh(pair.refreshToken)
            let second = try await other.refresh(try #require(first.refreshToken))
            #expect(first.isSuccess && second.isSuccess)
            #expect(h.simulator.counters.rotations == 2)
        }
    }

    @Test func eachAppsCountersSeeOnlyItsOwnCallsEverySignatureValid() async throws {
        try await Self.run { h in
            let first = SimulatorHarness.appKey
            let other = Self.otherAppKey
            for seller in ["1001", "1002"] {
                h.simulator.addSeller(sellerID: seller, appKey: first)
                h.simulator.addSeller(sellerID: seller, appKey: other)
            }
            try await h.withClient { client in
                for seller in ["1001", "1002"] {
                    let code = try h.simulator.issueAuthorizationCode(for: seller, appKey: first)
                    let grant = try await client.createToken(code: code)
                    _ = try await client.refresh(refreshToken: try #require(grant.refreshToken))
                }
            }
            try await h.withClient(appKey: other, secret: Self.otherSecret) { client in
                let code = try h.simulator.issueAuthorizationCode(for: "1002", appKey: other)
                _ = try await client.createToken(code: code)
            }
            let stranger = h.gateway(appKey: "999999", secret: "unknown")
            #expect(try await stranger.refresh(Secret("50001-not-a-token")).errorCode == "InvalidAppKey")

            let firstCounters = h.simulator.counters(forApp: first)
            #expect(firstCounters.requests == 4)
            #expect(firstCounters.codeExchanges == 2 && firstCounters.rotations == 2)
            #expect(firstCounters.requests(to: "/auth/token/refresh") == 2)
            #expect(firstCounters.rejections.isEmpty)
            let otherCounters = h.simulator.counters(forApp: other)
            #expect(otherCounters.requests == 1)
            #expect(otherCounters.codeExchanges == 1 && otherCounters.rotations == 0)
            #expect(otherCounters.rejections.isEmpty)
            #expect(Set(h.simulator.countersByApp.keys) == [first, other])
            // The stranger's call counts for the gateway alone.
            #expect(h.simulator.counters.requests == 6)
            #expect(h.simulator.counters.rejections == ["InvalidAppKey": 1])

            h.simulator.resetCounters()
            #expect(h.simulator.countersByApp.isEmpty)
        }
    }

    @Test func aThrottleBansOnlyTheAppItHit() async throws {
        try await Self.run { h in
            let pair = try h.enrolledSeller()
            h.simulator.addSeller(sellerID: "2002", appKey: Self.otherAppKey)
            let otherPair = try h.simulator.seedTokens(for: "2002")
            let other = h.gateway(appKey: Self.otherAppKey, secret: Self.otherSecret)
            h.simulator.injectFaults(.throttled, forApp: SimulatorHarness.appKey)

            #expect(try await other.refresh(otherPair.refreshToken).isSuccess)
            #expect(try await h.gateway.refresh(pair.refreshToken).errorCode == "ApiCallLimit")
            #expect(try await h.gateway.refresh(pair.refreshToken).errorCode == "ApiCallLimit")
            let rotated = try #require(h.simulator.currentRefreshToken(for: "2002"))
            #expect(try await other.refresh(rotated).isSuccess)

            #expect(h.simulator.counters(forApp: SimulatorHarness.appKey).callsDuringBan == 1)
            #expect(h.simulator.counters(forApp: SimulatorHarness.appKey).faults(.throttled) == 1)
            #expect(h.simulator.counters(forApp: Self.otherAppKey).callsDuringBan == 0)
            #expect(h.simulator.counters(forApp: Self.otherAppKey).rotations == 2)
        }
    }

    @Test func theAuthorizationPageIssuesACodeForTheSellerOfItsApp() async throws {
        try await Self.run { h in
            h.simulator.addSeller(sellerID: "1001", appKey: SimulatorHarness.appKey)
            h.simulator.addSeller(sellerID: "1001", appKey: Self.otherAppKey)
            let url = try AuthorizationURL.make(
                gatewayBaseURL: h.simulator.baseURL!, appKey: Self.otherAppKey,
                redirectURI: "https://tokens.example.com/cb", state: "s")
            let (status, location) = try await AuthorizePageTests.open(url + "&seller_id=1001")
            #expect(status == 302)
            let target = try #require(location.flatMap(URLComponents.init(string:)))
            let code = try #require(target.queryItems?.first { $0.name == "code" }?.value)

            try await h.withClient(appKey: Self.otherAppKey, secret: Self.otherSecret) { client in
                let grant = try await client.createToken(code: code)
                #expect(grant.refreshToken == h.simulator.currentRefreshToken(for: "1001", appKey: Self.otherAppKey))
            }
            #expect(h.simulator.currentRefreshToken(for: "1001", appKey: SimulatorHarness.appKey) == nil)
            #expect(h.simulator.counters(forApp: Self.otherAppKey).authorizations == 1)
        }
    }
}
