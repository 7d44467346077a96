import SQLiteStore
import Testing
import TokenKeeperCore

@testable import TokenKeeperService

@Suite struct ImportLineParserTests {
    @Test func savedGatewayAnswerImportsAsItIs() throws {
        let line = """
            {"refresh_token_valid_time":"1800000000000","havana_id":"10000","code":"0","expire_time":1790000000000,\
            "locale":"zh_CN","user_nick":"cn1001","access_token":"AT-1","refresh_token":"RT-1","account_id":null,\
            "user_id":"10101","account_platform":"seller_center","refresh_expires_in":"60","expires_in":"10",\
            "sp":"global","seller_id":"1001","account":"x@126.com"}
            """
        let seller = try #require(try ImportLineParser.parse(line[...], number: 1))
        #expect(seller.sellerID == "1001")
        #expect(seller.refreshToken.exposedValue == "RT-1")
        #expect(seller.accessToken?.exposedValue == "AT-1")
        #expect(seller.expireTime == Timestamp(millisecondsSince1970: 1_790_000_000_000))
        #expect(seller.refreshTokenValidTime == Timestamp(millisecondsSince1970: 1_800_000_000_000))
        #expect(seller.profile.userNick == "cn1001")
        #expect(seller.profile.accountPlatform == "seller_center")
        #expect(seller.accessTokenLifetime == .seconds(10))
    }

    @Test func expiresInMustBeALifetimeInWholeSeconds() throws {
        let base = #""seller_id":"1","refresh_token":"r","access_token":"a","expire_time":1790000000000"#
        let given = try #require(try ImportLineParser.parse("{\(base),\"expires_in\":600}"[...], number: 1))
        #expect(given.accessTokenLifetime == .seconds(600))
        let none = try #require(try ImportLineParser.parse("{\(base)}"[...], number: 1))
        #expect(none.accessTokenLifetime == nil)
        for bad in [#""0""#, "-5", #""ten""#, "1.5", "{}"] {
            #expect(throws: ImportLineError.self) {
                _ = try ImportLineParser.parse("{\(base),\"expires_in\":\(bad)}"[...], number: 3)
            }
        }
    }

    @Test func userIDStandsInForAMissingSellerID() throws {
        let seller = try #require(
            try ImportLineParser.parse(#"{"seller_id":"","user_id":"77","refresh_token":"r"}"#[...], number: 1))
        #expect(seller.sellerID == "77")
        #expect(seller.accessToken == nil)
    }

    @Test func blankAndCommentLinesAreSkipped() throws {
        #expect(try ImportLineParser.parse("   "[...], number: 1) == nil)
        #expect(try ImportLineParser.parse("# exported 2026-11-01"[...], number: 2) == nil)
    }

    @Test(arguments: [
        (#"{"seller_id":"1"}"#, "refresh_token is missing"),
        (#"{"refresh_token":"r"}"#, "seller_id (or user_id) is missing"),
        (#"{"seller_id":"1","refresh_token":"r","access_token":"a"}"#, "without expire_time"),
        (#"{"seller_id":"1","refresh_token":"r","access_token":"a","expire_time":1790000000}"#, "looks like seconds"),
        (#"{"seller_id":"1","refresh_token":"r","access_token":"a","expire_time":"soon"}"#, "epoch milliseconds"),
        (#"{"seller_id":"1","refresh_token":["r"]}"#, "must be a string"),
        (#"["seller_id"]"#, "not a JSON object"),
        (#"{"seller_id":"1","refresh_token":"SECRET-RT"#, "not valid JSON"),
    ])
    func badLinesAreRefusedWithTheirLineNumberAndNoToken(line: String, problem: String) {
        let error = #expect(throws: ImportLineError.self) { try ImportLineParser.parse(line[...], number: 42) }
        #expect(error?.line == 42)
        #expect(error?.description.contains(problem) == true, "\(String(describing: error))")
        #expect(error?.description.contains("SECRET-RT") == false)
    }
}
