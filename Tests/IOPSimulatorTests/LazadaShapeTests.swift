import IOPGateway
import IOPSimulator
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// A simulator configured as Lazada answers in Lazada's shape, which the real
/// client reads into the seller's ventures.
@Suite("A simulator answering in Lazada's shape")
struct LazadaShapeTests {
    static let ventures = [
        VentureSeller(country: "sg", sellerID: "100015339", userID: "100027341", shortCode: "SG10XF3"),
        VentureSeller(country: "th", sellerID: "100015340", userID: "100027342", shortCode: "TH10XF4"),
        VentureSeller(country: "vn", sellerID: "100015341", userID: "100027343", shortCode: "VN10XF5"),
    ]

    @Test(arguments: NumberEncoding.allCases)
    func aCrossBorderAccountAnswersWithEverySellerItServes(encoding: NumberEncoding) async throws {
        try await SimulatorHarness.run(answerShape: .lazada, configure: { $0.numberEncoding = encoding }) { h in
            h.simulator.addSeller(.crossBorderAccount(ventures: Self.ventures, account: "shop@example.com"))
            #expect(h.simulator.sellerIDs == ["100015339"])
            try await h.withClient { client in
                let code = try h.simulator.issueAuthorizationCode(for: "100015339")
                let created = try await client.createToken(code: code)
                #expect(created.sellerID == "100015339")
                #expect(created.profile.country == "cb")
                #expect(created.profile.account == "shop@example.com")
                #expect(created.profile.ventures == Self.ventures)
                #expect(created.refreshToken == h.simulator.currentRefreshToken(for: "100015339"))
                // Lazada states lifetimes only: no absolute times.
                #expect(created.refreshTokenValidTime == nil)
                #expect(created.refreshTokenLifetime == .seconds(3600))
                #expect(created.accessTokenLifetime == .seconds(600))
                #expect(created.anomalies.isEmpty)

                h.clock.advance(by: .seconds(60))
                let rotated = try await client.refresh(refreshToken: try #require(created.refreshToken))
                #expect(rotated.sellerID == "100015339")
                #expect(rotated.profile.ventures == Self.ventures)
                #expect(rotated.refreshTokenLifetime == .seconds(3540))
                #expect(rotated.refreshToken == h.simulator.currentRefreshToken(for: "100015339"))
            }
        }
    }

    @Test func theAnswerHasNoTopLevelSellerAndListsTheSellersByCountry() async throws {
        try await SimulatorHarness.run(answerShape: .lazada) { h in
            h.simulator.addSeller(.crossBorderAccount(ventures: Self.ventures))
            let answer = try await h.gateway.create(code: try h.simulator.issueAuthorizationCode(for: "100015339"))
            #expect(answer.isSuccess)
            #expect(answer.string("seller_id") == nil && answer.string("user_id") == nil)
            #expect(answer.integer("expire_time") == nil && answer.integer("refresh_token_valid_time") == nil)
            #expect(answer.string("country") == "cb")
            #expect(answer.string("account_platform") == "seller_center")
            let listed = try #require(answer.object?["country_user_info"] as? [[String: Any]])
            #expect(listed.compactMap { $0["country"] as? String } == ["sg", "th", "vn"])
            #expect(listed.compactMap { $0["short_code"] as? String } == ["SG10XF3", "TH10XF4", "VN10XF5"])
        }
    }

    @Test func aLocalSellerAnswersWithItselfInItsCountry() async throws {
        try await SimulatorHarness.run(answerShape: .lazada) { h in
            h.simulator.addSeller(sellerID: "200123456", userID: "300123456", country: "th")
            try await h.withClient { client in
                let grant = try await client.createToken(code: try h.simulator.issueAuthorizationCode(for: "200123456"))
                #expect(grant.sellerID == "200123456")
                #expect(grant.profile.country == "th")
                #expect(
                    grant.profile.ventures == [
                        VentureSeller(country: "th", sellerID: "200123456", userID: "300123456", shortCode: "TH123456")
                    ])
            }
        }
    }

    @Test func theUserInfoQuirkListsALocalSellerAsOneObject() async throws {
        try await SimulatorHarness.run(answerShape: .lazada, configure: { $0.quirks["200123456"] = .userInfo }) { h in
            h.simulator.addSeller(sellerID: "200123456", country: "my")
            let raw = try await h.gateway.create(code: try h.simulator.issueAuthorizationCode(for: "200123456"))
            #expect(raw.object?["user_info"] is [String: Any])
            #expect(raw.object?["country_user_info"] == nil)
            try await h.withClient { client in
                let grant = try await client.refresh(refreshToken: try #require(raw.refreshToken))
                #expect(grant.sellerID == "200123456")
                #expect(grant.profile.ventures.map(\.country) == ["my"])
            }
        }
    }

    @Test func oneSimulatorAnswersEachAppInItsOwnShape() async throws {
        let lazadaApp = "700300"
        let apps = [lazadaApp: "lazada-secret"]
        try await SimulatorHarness.run(otherApps: apps, answerShapesByApp: [lazadaApp: .lazada]) { h in
            h.simulator.addSeller(sellerID: "1001", appKey: SimulatorHarness.appKey)
            h.simulator.addSeller(.crossBorderAccount(ventures: Self.ventures, appKey: lazadaApp))
            let aliExpress = try await h.gateway.create(code: try h.simulator.issueAuthorizationCode(for: "1001"))
            #expect(aliExpress.string("seller_id") == "1001")
            #expect(aliExpress.object?["country_user_info"] == nil)

            try await h.withClient(appKey: lazadaApp, secret: "lazada-secret") { client in
                let grant = try await client.createToken(
                    code: try h.simulator.issueAuthorizationCode(for: "100015339", appKey: lazadaApp))
                #expect(grant.profile.ventures.map(\.sellerID) == Self.ventures.map(\.sellerID))
            }
            #expect(h.simulator.counters(forApp: lazadaApp).codeExchanges == 1)
            #expect(h.simulator.counters(forApp: SimulatorHarness.appKey).codeExchanges == 1)
        }
    }
}
