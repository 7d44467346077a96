import IOPSimulator
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@Suite("/auth/token/create")
struct AuthorizationCodeTests {
    @Test func exchangesACodeForASuccessInTheVendorsShape() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(
                SimulatedSeller(
                    sellerID: "1001", userID: "10101", userNick: "cn1001", account: "xxx@126.com",
                    accountID: "7063844", accountPlatform: "seller_center", sp: "global", locale: "zh_CN",
                    havanaID: "10000"))
            let code = try h.simulator.issueAuthorizationCode(for: "1001")
            let answer = try await h.gateway.create(code: code)

            #expect(answer.status == 200)
            #expect(answer.contentType?.hasPrefix("application/json") == true)
            #expect(answer.date == "Wed, 26 Nov 2025 18:40:18 GMT")
            #expect(answer.isSuccess)
            #expect(answer.string("seller_id") == "1001")
            #expect(answer.string("user_id") == "10101")
            #expect(answer.string("user_nick") == "cn1001")
            #expect(answer.string("account") == "xxx@126.com")
            #expect(answer.string("account_id") == "7063844")
            #expect(answer.string("account_platform") == "seller_center")
            #expect(answer.string("sp") == "global")
            #expect(answer.string("locale") == "zh_CN")
            #expect(answer.string("havana_id") == "10000")
            #expect(answer.string("request_id")?.count == 25)
            let now = ManualWallClock.start.millisecondsSince1970
            #expect(answer.integer("expires_in") == 600)
            #expect(answer.integer("expire_time") == now + 600_000)
            #expect(answer.integer("refresh_expires_in") == 3600)
            #expect(answer.integer("refresh_token_valid_time") == now + 3_600_000)
            #expect(answer.accessToken?.exposedValue.count == 60)
            #expect(answer.refreshToken == h.simulator.currentRefreshToken(for: "1001"))
            #expect(h.simulator.counters.codeExchanges == 1)
            #expect(h.simulator.issuedTokens(for: "1001").map(\.origin) == [.authorizationCode])
        }
    }

    @Test func answersAccountIDAsNullWhenTheSellerHasNone() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(sellerID: "1001")
            let answer = try await h.gateway.create(code: try h.simulator.issueAuthorizationCode(for: "1001"))
            #expect(answer.isSuccess)
            #expect(answer.contains("\"account_id\":null"))
        }
    }

    @Test func aCodeIsExchangedOnlyOnce() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(sellerID: "1001")
            let code = try h.simulator.issueAuthorizationCode(for: "1001")
            let first = try await h.gateway.create(code: code)
            let second = try await h.gateway.create(code: code)

            #expect(first.isSuccess)
            #expect(second.errorCode == "InvalidCode")
            #expect(second.status == 200)
            let counters = h.simulator.counters
            #expect(counters.codeExchanges == 1)
            #expect(counters.codeReuses == 1)
            // The pair from the first exchange is untouched by the failed second one.
            #expect(h.simulator.currentRefreshToken(for: "1001") == first.refreshToken)
        }
    }

    @Test func anExpiredOrUnknownCodeIsRefused() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(sellerID: "1001")
            let code = try h.simulator.issueAuthorizationCode(for: "1001", validity: .seconds(60))
            h.clock.advance(by: .seconds(61))
            #expect(try await h.gateway.create(code: code).errorCode == "InvalidCode")
            #expect(try await h.gateway.create(code: "3_1_nonsense").errorCode == "InvalidCode")
            #expect(h.simulator.counters.codeExchanges == 0)
        }
    }

    @Test func aMissingCodeIsAMissingParameter() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.call("/auth/token/create", [:])
            #expect(answer.errorCode == "MissingParameter")
            #expect(answer.errorMessage?.contains("\"code\"") == true)
        }
    }

    @Test func reauthorizationSupersedesTheOldRefreshToken() async throws {
        try await SimulatorHarness.run { h in
            let seeded = try h.enrolledSeller("1001")
            h.clock.advance(by: .seconds(100))
            let answer = try await h.gateway.create(code: try h.simulator.issueAuthorizationCode(for: "1001"))
            #expect(answer.isSuccess)
            // A new authorization starts a new validity period.
            #expect(
                answer.integer("refresh_token_valid_time") == seeded.refreshTokenValidTime.millisecondsSince1970
                    + 100_000)
            let old = try await h.gateway.refresh(seeded.refreshToken)
            #expect(old.errorCode == "IllegalRefreshToken")
            // Not a client bug: the token was replaced, not rotated.
            #expect(h.simulator.counters.refreshTokenReuses == 0)
        }
    }

    @Test func apiMisuseThrowsForUnknownSellers() {
        let simulator = IOPSimulator(appKey: "k", appSecret: Secret("s"))
        #expect(throws: IOPSimulatorError.unknownSeller("nobody")) {
            try simulator.issueAuthorizationCode(for: "nobody")
        }
        #expect(throws: IOPSimulatorError.unknownSeller("nobody")) { try simulator.seedTokens(for: "nobody") }
        #expect(throws: IOPSimulatorError.unknownSeller("nobody")) { try simulator.revoke(sellerID: "nobody") }
    }

    @Test func aSellerWithoutSellerIDIsFiledUnderItsUserID() async throws {
        try await SimulatorHarness.run { h in
            let seller = SimulatedSeller(sellerID: "", userID: "777")
            h.simulator.addSeller(seller)
            #expect(h.simulator.sellerIDs == ["777"])
            let answer = try await h.gateway.create(code: try h.simulator.issueAuthorizationCode(for: "777"))
            #expect(answer.string("seller_id") == "")
            #expect(answer.string("user_id") == "777")
        }
    }
}
