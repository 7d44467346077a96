import Testing
import TokenKeeperCore

@testable import IOPGateway

/// Lazada's answers to `/auth/token/create` and `/auth/token/refresh`: no
/// top-level `seller_id`, but `country` and the sellers the token serves.
@Suite("Lazada's answer shape")
struct IOPResponseDecoderVentureTests {
    static let singapore = #"{"country":"sg","user_id":"100027341","seller_id":"100015339","short_code":"SG10XF3"}"#
    static let thailand = #"{"country":"th","user_id":100027342,"seller_id":100015340,"short_code":"TH10XF4"}"#
    static let vietnam = #"{"country":"vn","user_id":"100027343","seller_id":"100015341","short_code":"VN10XF5"}"#

    /// A Lazada answer; `sellers` is the JSON after the list's key (or nothing).
    static func lazadaAnswer(country: String = "cb", sellers: String) -> String {
        """
        {"code":"0","access_token":"\(Fixture.accessToken)","refresh_token":"\(Fixture.refreshToken)",\
        "expires_in":604800,"refresh_expires_in":"2592000","account":"shop@example.com","country":"\(country)",\
        "account_platform":"seller_center",\(sellers)"request_id":"2101e6f317000000000000009"}
        """
    }

    @Test func aCrossBorderAccountListsOneSellerPerCountryInOrderAndIsKeyedByTheFirst() throws {
        let body = Self.lazadaAnswer(
            sellers: #""country_user_info":[\#(Self.singapore),\#(Self.thailand),\#(Self.vietnam)],"#)
        let grant = try #require(Fixture.grant(body))
        #expect(grant.sellerID == "100015339")
        #expect(grant.profile.country == "cb")
        #expect(grant.profile.account == "shop@example.com")
        #expect(grant.profile.accountPlatform == "seller_center")
        #expect(
            grant.profile.ventures == [
                VentureSeller(country: "sg", sellerID: "100015339", userID: "100027341", shortCode: "SG10XF3"),
                VentureSeller(country: "th", sellerID: "100015340", userID: "100027342", shortCode: "TH10XF4"),
                VentureSeller(country: "vn", sellerID: "100015341", userID: "100027343", shortCode: "VN10XF5"),
            ])
        #expect(grant.accessTokenLifetime == .seconds(604_800))
        #expect(grant.expireTime == Fixture.receivedAt + .seconds(604_800))
        #expect(grant.refreshTokenLifetime == .seconds(2_592_000))
        #expect(grant.refreshTokenValidTime == nil)
        #expect(grant.requestID == "2101e6f317000000000000009")
        #expect(grant.anomalies.isEmpty)
    }

    @Test(arguments: [
        #""user_info":\#(IOPResponseDecoderVentureTests.singapore),"#,
        #""user_info":[\#(IOPResponseDecoderVentureTests.singapore)],"#,
    ])
    func aLocalSellerAnsweringWithUserInfoHasOneSeller(userInfo: String) throws {
        let grant = try #require(Fixture.grant(Self.lazadaAnswer(country: "sg", sellers: userInfo)))
        #expect(grant.sellerID == "100015339")
        #expect(grant.profile.country == "sg")
        #expect(
            grant.profile.ventures == [
                VentureSeller(country: "sg", sellerID: "100015339", userID: "100027341", shortCode: "SG10XF3")
            ])
        #expect(grant.anomalies.isEmpty)
    }

    @Test func aLocalSellerAnsweringWithACountryUserInfoObjectHasOneSeller() throws {
        let body = Self.lazadaAnswer(country: "sg", sellers: #""country_user_info":\#(Self.singapore),"#)
        let grant = try #require(Fixture.grant(body))
        #expect(grant.profile.ventures.map(\.sellerID) == ["100015339"])
    }

    @Test func countryUserInfoWinsOverUserInfoUnlessItListsNobody() throws {
        let both = Self.lazadaAnswer(
            country: "sg", sellers: #""country_user_info":[\#(Self.singapore)],"user_info":\#(Self.thailand),"#)
        #expect(Fixture.grant(both)?.profile.ventures.map(\.sellerID) == ["100015339"])
        let emptyList = Self.lazadaAnswer(
            country: "th", sellers: #""country_user_info":[],"user_info":\#(Self.thailand),"#)
        #expect(Fixture.grant(emptyList)?.profile.ventures.map(\.sellerID) == ["100015340"])
    }

    @Test(arguments: ["", #""seller_id":null,"#, #""seller_id":"","#, #""seller_id":" ","#, #""seller_id":true,"#])
    func anEntryWithoutASellerIDIsSkippedAndNotedByPositionOnly(sellerID: String) throws {
        let entry = #"{"country":"sg",\#(sellerID)"user_id":"100027341","short_code":"SG10XF3"}"#
        let body = Self.lazadaAnswer(sellers: #""country_user_info":[\#(entry),\#(Self.thailand)],"#)
        let grant = try #require(Fixture.grant(body))
        #expect(grant.profile.ventures.map(\.sellerID) == ["100015340"])
        #expect(grant.sellerID == "100015340")
        #expect(grant.anomalies == ["country_user_info[0] has no seller_id; skipped"])
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
    }

    @Test func anAnswerWhoseOnlyEntryHasNoSellerIDIsStillAGrantForTheCallerToKey() throws {
        let body = Self.lazadaAnswer(country: "sg", sellers: #""user_info":{"country":"sg","short_code":"SG1"},"#)
        let grant = try #require(Fixture.grant(body))
        #expect(grant.sellerID == "")
        #expect(grant.profile.ventures.isEmpty)
        #expect(grant.anomalies == ["user_info[0] has no seller_id; skipped"])
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
    }

    @Test func aRepeatedSellerIDIsKeptOnce() throws {
        let body = Self.lazadaAnswer(
            sellers: #""country_user_info":[\#(Self.singapore),\#(Self.thailand),\#(Self.singapore)],"#)
        let grant = try #require(Fixture.grant(body))
        #expect(grant.profile.ventures.map(\.sellerID) == ["100015339", "100015340"])
        #expect(grant.anomalies == ["country_user_info[2] repeats an earlier seller_id; skipped"])
    }

    @Test func anEntryWithoutACountryTakesTheAnswersUnlessItIsCrossBorder() throws {
        let entry = #"{"seller_id":"100015339","short_code":"SG10XF3"}"#
        let local = try #require(
            Fixture.grant(Self.lazadaAnswer(country: "SG", sellers: #""country_user_info":[\#(entry)],"#)))
        #expect(local.profile.country == "sg")
        #expect(local.profile.ventures == [VentureSeller(country: "sg", sellerID: "100015339", shortCode: "SG10XF3")])
        #expect(local.anomalies.isEmpty)

        let crossBorder = try #require(
            Fixture.grant(Self.lazadaAnswer(country: "cb", sellers: #""country_user_info":[\#(entry)],"#)))
        #expect(crossBorder.profile.ventures.map(\.country) == [""])
        #expect(crossBorder.anomalies == ["country_user_info[0] has no country"])
    }

    @Test(arguments: [#""x""#, "42", "true", "[1,\"a\"]"])
    func anUnreadableSellerListNeverHidesTheGrant(list: String) throws {
        let grant = try #require(Fixture.grant(Self.lazadaAnswer(sellers: #""country_user_info":\#(list),"#)))
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        #expect(grant.sellerID == "")
        #expect(grant.profile.ventures.isEmpty)
        #expect(!grant.anomalies.isEmpty)
    }

    @Test(arguments: ["null", #""""#, "[]"])
    func anAbsentSellerListIsNoAnomaly(list: String) throws {
        let grant = try #require(Fixture.grant(Self.lazadaAnswer(sellers: #""country_user_info":\#(list),"#)))
        #expect(grant.profile.ventures.isEmpty)
        #expect(grant.anomalies.isEmpty)
    }

    @Test func aTopLevelSellerIDStillKeysTheGrant() throws {
        let body = Self.lazadaAnswer(
            country: "sg", sellers: #""seller_id":"777","country_user_info":[\#(Self.singapore)],"#)
        let grant = try #require(Fixture.grant(body))
        #expect(grant.sellerID == "777")
        #expect(grant.profile.ventures.map(\.sellerID) == ["100015339"])
    }

    @Test func anAliExpressAnswerIsUnchangedAndHasNoSellerList() throws {
        let grant = try #require(Fixture.grant(IOPResponseDecoderTests.vendorSample))
        #expect(grant.sellerID == "1001")
        #expect(grant.profile.country == nil)
        #expect(grant.profile.ventures.isEmpty)
        #expect(
            grant.profile
                == SellerProfile(
                    userID: "10101", userNick: "cn1001", account: "xxx@126.com", accountPlatform: "seller_center",
                    sp: "global", locale: "zh_CN"))
        #expect(grant.anomalies.isEmpty)
    }
}
