import Foundation
import Testing
import TokenKeeperCore

@testable import IOPGateway

@Suite struct IOPResponseDecoderTests {
    /// The vendor's own sample answer, every number a string.
    static let vendorSample = """
        {
          "refresh_token_valid_time": "1500",
          "havana_id": "10000",
          "code": "0",
          "expire_time": "1500",
          "locale": "zh_CN",
          "user_nick": "cn1001",
          "access_token": "50000601c30atpedfgu3LVvik87Ixlsvle3mSoB7701ceb156fPunYZ43GBg",
          "refresh_token": "500016000300bwa2WteaQyfwBMnPxurcA0mXGhQdTt18356663CfcDTYpWoi",
          "account_id": "7063844",
          "user_id": "10101",
          "account_platform": "seller_center",
          "refresh_expires_in": "60",
          "expires_in": "10",
          "sp": "global",
          "request_id": "0ba2887315178178017221014",
          "seller_id": "1001",
          "account": "xxx@126.com"
        }
        """

    /// A realistic answer with JSON numbers and a null account_id.
    static func numericGrant(
        sellerID: String = "\"2001\"", userID: String = "\"20101\"", code: String = "0",
        refreshExpiresIn: String = "2592000", refreshToken: String = "\"\(Fixture.refreshToken)\""
    ) -> String {
        """
        {"code":\(code),"access_token":"\(Fixture.accessToken)","refresh_token":\(refreshToken),
         "expires_in":86400,"refresh_expires_in":\(refreshExpiresIn),"expire_time":1700086400000,
         "refresh_token_valid_time":1702592000000,"account_id":null,"seller_id":\(sellerID),
         "user_id":\(userID),"user_nick":"shop","account_platform":"seller_center","sp":"ae","locale":"en_US",
         "request_id":"2101e6f317000000000000001"}
        """
    }

    @Test func decodesTheVendorSampleWithNumbersAsStrings() throws {
        let grant = try #require(Fixture.grant(Self.vendorSample))
        #expect(grant.sellerID == "1001")
        #expect(grant.accessToken == Secret(Fixture.accessToken))
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        #expect(grant.accessTokenLifetime == .seconds(10))
        #expect(grant.refreshTokenLifetime == .seconds(60))
        #expect(grant.expireTime == Timestamp(millisecondsSince1970: 1500))
        #expect(grant.refreshTokenValidTime == Timestamp(millisecondsSince1970: 1500))
        #expect(grant.requestID == "0ba2887315178178017221014")
        #expect(grant.receivedAt == Fixture.receivedAt)
        #expect(!grant.isFinalGrant)
        #expect(
            grant.profile
                == SellerProfile(
                    userID: "10101", userNick: "cn1001", account: "xxx@126.com", accountPlatform: "seller_center",
                    sp: "global", locale: "zh_CN"))
    }

    @Test func decodesNumbersAsNumbersAndANullAccountID() throws {
        let grant = try #require(Fixture.grant(Self.numericGrant()))
        #expect(grant.sellerID == "2001")
        #expect(grant.accessTokenLifetime == .seconds(86400))
        #expect(grant.refreshTokenLifetime == .seconds(2_592_000))
        #expect(grant.expireTime == Timestamp(millisecondsSince1970: 1_700_086_400_000))
        #expect(grant.refreshTokenValidTime == Timestamp(millisecondsSince1970: 1_702_592_000_000))
        #expect(grant.requestID == "2101e6f317000000000000001")
    }

    @Test func acceptsCodeZeroAsStringOrNumberAndNumericIDs() throws {
        #expect(Fixture.grant(Self.numericGrant(code: "\"0\"")) != nil)
        let grant = try #require(Fixture.grant(Self.numericGrant(sellerID: "1001", userID: "10101")))
        #expect(grant.sellerID == "1001")
        #expect(grant.profile.userID == "10101")
    }

    @Test func acceptsWholeNumbersWrittenWithAFraction() throws {
        let body = Self.numericGrant().replacingOccurrences(
            of: "\"expires_in\":86400", with: "\"expires_in\":\"86400.0\"")
        let grant = try #require(Fixture.grant(body))
        #expect(grant.accessTokenLifetime == .seconds(86400))
    }

    @Test(arguments: ["\"\"", "null"])
    func usesUserIDWhenSellerIDIsEmpty(sellerID: String) throws {
        let grant = try #require(Fixture.grant(Self.numericGrant(sellerID: sellerID)))
        #expect(grant.sellerID == "20101")
    }

    @Test func usesUserIDWhenSellerIDIsMissing() throws {
        let body = Self.numericGrant().replacingOccurrences(of: "\"seller_id\":\"2001\",", with: "")
        #expect(Fixture.grant(body)?.sellerID == "20101")
    }

    @Test func keepsAGrantWithNeitherSellerIDNorUserIDForTheCallerToKey() throws {
        // `/auth/token/security/refresh` answers carry no seller fields; the
        // refresher knows whose token it sent, and the new one must be stored.
        let grant = try #require(Fixture.grant(Self.numericGrant(sellerID: "\"\"", userID: "null")))
        #expect(grant.sellerID == "")
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        #expect(grant.requestID == "2101e6f317000000000000001")
    }

    @Test func keepsTheSecurityRefreshShapeWithTokensAndLifetimesOnly() throws {
        let body = """
            {"code":"0","access_token":"\(Fixture.accessToken)","refresh_token":"\(Fixture.refreshToken)",
             "expires_in":"86400","refresh_expires_in":"2592000","request_id":"req-sec"}
            """
        let grant = try #require(Fixture.grant(body))
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        #expect(grant.accessTokenLifetime == .seconds(86400))
        #expect(grant.anomalies.isEmpty)
    }

    @Test func treatsRefreshExpiresInZeroAsAFinalGrantNotAnError() throws {
        let grant = try #require(Fixture.grant(Self.numericGrant(refreshExpiresIn: "\"0\"")))
        #expect(grant.isFinalGrant)
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        let withoutRefreshToken = try #require(
            Fixture.grant(Self.numericGrant(refreshExpiresIn: "0", refreshToken: "\"\"")))
        #expect(withoutRefreshToken.isFinalGrant)
        #expect(withoutRefreshToken.refreshToken == nil, "never an empty token to store")
        #expect(withoutRefreshToken.accessToken == Secret(Fixture.accessToken))
    }

    @Test func acceptsASuccessWithoutCodeWhenItCarriesTokens() throws {
        let body = Self.numericGrant().replacingOccurrences(of: "\"code\":0,", with: "")
        #expect(Fixture.grant(body)?.sellerID == "2001")
    }

    @Test func keepsAGrantThatArrivesWithAServerErrorStatus() throws {
        // The refresh token has already been rotated; dropping the pair would lose the seller.
        #expect(Fixture.grant(Self.numericGrant(), status: 500)?.sellerID == "2001")
    }

    @Test(arguments: ["\"\"", "null", "12345", "[]"])
    func keepsTheRotatedRefreshTokenOfASuccessWithoutAStringAccessToken(value: String) throws {
        let body = Self.numericGrant().replacingOccurrences(
            of: "\"access_token\":\"\(Fixture.accessToken)\"", with: "\"access_token\":\(value)")
        let grant = try #require(Fixture.grant(body))
        #expect(grant.accessToken == nil)
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        #expect(!grant.anomalies.isEmpty)
    }

    @Test func refusesASuccessThatCarriesNoTokenAtAll() throws {
        let body = #"{"code":"0","expires_in":86400,"request_id":"r"}"#
        let failure = try #require(Fixture.failure(body))
        #expect(failure.code == IOPFailureCode.malformedResponse)
        #expect(failure.failureClass == .transient)
    }

    @Test(arguments: ["\"\"", "null", "12345"])
    func treatsASuccessWithoutARefreshTokenAsNotRotated(value: String) throws {
        let grant = try #require(Fixture.grant(Self.numericGrant(refreshToken: value)))
        #expect(grant.refreshToken == nil)
        #expect(!grant.isFinalGrant)
        #expect(grant.accessToken == Secret(Fixture.accessToken))
    }

    @Test(arguments: ["\"abc\"", "-5", "true", "{}", "\"1e400\""])
    func sanitizesANumericFieldThatIsNotAWholeNumber(value: String) throws {
        let body = Self.numericGrant().replacingOccurrences(of: "\"expires_in\":86400", with: "\"expires_in\":\(value)")
        let grant = try #require(Fixture.grant(body))
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        #expect(grant.anomalies.contains { $0.contains("expires_in") })
        // expire_time is still there to say when the token expires.
        #expect(grant.expireTime == Timestamp(millisecondsSince1970: 1_700_086_400_000))
    }

    @Test func cutsAnAbsurdLifetimeInsteadOfOverflowing() throws {
        let body = Self.numericGrant().replacingOccurrences(
            of: "\"expires_in\":86400", with: "\"expires_in\":9000000000000000000")
        let grant = try #require(Fixture.grant(body))
        #expect(grant.accessTokenLifetime == IOPResponseDecoder.maximumLifetime)
        #expect(!grant.anomalies.isEmpty)
    }

    @Test func derivesTheExpiryFromExpiresInWhenExpireTimeIsMissing() throws {
        let body = Self.numericGrant().replacingOccurrences(of: "\"expire_time\":1700086400000,", with: "")
        let grant = try #require(Fixture.grant(body))
        #expect(grant.expireTime == Fixture.receivedAt + .seconds(86400))
    }

    @Test func derivesLifetimesFromAbsoluteTimesAndTheGatewayDate() throws {
        let body = Self.numericGrant()
            .replacingOccurrences(of: "\"expires_in\":86400,", with: "")
            .replacingOccurrences(of: "\"refresh_expires_in\":2592000,", with: "")
        // The gateway's clock says 1_700_000_000_000, ours is 5 s ahead.
        let headers = [(name: "date", value: "Tue, 14 Nov 2023 22:13:20 GMT")]
        let decoded = IOPResponseDecoder().decode(
            status: 200, headers: headers, body: Array(body.utf8),
            receivedAt: Fixture.receivedAt + .seconds(5))
        let grant = try decoded.get()
        #expect(grant.gatewayDate == Timestamp(millisecondsSince1970: 1_700_000_000_000))
        #expect(grant.accessTokenLifetime == .seconds(86400))
        #expect(grant.refreshTokenLifetime == .milliseconds(2_592_000_000))
    }

    @Test func keepsAGrantWithoutAnyExpiryAsAlreadyExpired() throws {
        let body = Self.numericGrant()
            .replacingOccurrences(of: "\"expires_in\":86400,", with: "")
            .replacingOccurrences(of: "\"expire_time\":1700086400000,", with: "")
        let grant = try #require(Fixture.grant(body))
        #expect(grant.refreshToken == Secret(Fixture.refreshToken))
        #expect(grant.expireTime == Fixture.receivedAt)
        #expect(grant.anomalies.contains { $0.contains("expires_in") })
        let noRefreshExpiry = Self.numericGrant()
            .replacingOccurrences(of: "\"refresh_expires_in\":2592000,", with: "")
            .replacingOccurrences(of: "\"refresh_token_valid_time\":1702592000000,", with: "")
        let unknown = try #require(Fixture.grant(noRefreshExpiry))
        #expect(unknown.refreshTokenLifetime == nil)
        #expect(!unknown.isFinalGrant)
    }

    @Test func readsTheDateHeader() throws {
        let grant = try #require(
            Fixture.grant(Self.vendorSample, headers: [(name: "Date", value: "Sun, 06 Nov 1994 08:49:37 GMT")]))
        #expect(grant.gatewayDate == Timestamp(millisecondsSince1970: 784_111_777_000))
        #expect(Fixture.grant(Self.vendorSample, headers: [(name: "Date", value: "yesterday")])?.gatewayDate == nil)
        #expect(Fixture.grant(Self.vendorSample)?.gatewayDate == nil)
    }

    // MARK: Error envelopes

    @Test func classifiesTheTopLevelErrorEnvelope() throws {
        let body = """
            {"type":"ISV","code":"IllegalRefreshToken","message":"Illegal Refresh Token",\
            "request_id":"2140e4a117000000000000002","_trace_id_":"2140e4a1170000000000000003"}
            """
        let failure = try #require(Fixture.failure(body))
        #expect(failure.failureClass == .accountRejected)
        #expect(failure.code == "IllegalRefreshToken")
        #expect(failure.message == "Illegal Refresh Token")
        #expect(failure.requestID == "2140e4a117000000000000002")
        #expect(failure.httpStatus == 200)
        #expect(!failure.isUnknownCode)
    }

    @Test func fallsBackToTheTraceIDWhenThereIsNoRequestID() throws {
        let body = #"{"type":"ISP","code":"ServiceTimeout","message":"timeout","_trace_id_":"trace-1"}"#
        #expect(Fixture.failure(body)?.requestID == "trace-1")
    }

    @Test func classifiesTheErrorResponseForm() throws {
        let body = """
            {"error_response":{"type":"ISV","code":"IncompleteSignature",\
            "msg":"The request signature does not conform to platform standards","request_id":"0b1a2b3c"}}
            """
        let failure = try #require(Fixture.failure(body, status: 400))
        #expect(failure.failureClass == .configuration)
        #expect(failure.code == "IncompleteSignature")
        #expect(failure.message.contains("signature"))
        #expect(failure.requestID == "0b1a2b3c")
        #expect(failure.httpStatus == 400)
    }

    @Test func treatsAnErrorResponseWithoutCodeAsMalformed() throws {
        let failure = try #require(Fixture.failure(#"{"error_response":{"msg":"oops","request_id":"r1"}}"#))
        #expect(failure.code == IOPFailureCode.malformedResponse)
        #expect(failure.failureClass == .transient)
        #expect(failure.requestID == "r1")
    }

    @Test func classifiesAThrottleWithItsBan() throws {
        let body = """
            {"type":"ISV","code":"ApiCallLimit",\
            "message":"The request has failed due to api call limit, ban will last 7 seconds","request_id":"r"}
            """
        #expect(Fixture.failure(body)?.failureClass == .throttled(retryAfter: .seconds(7)))
    }

    @Test func flagsAnUnknownCodeAsTransient() throws {
        let failure = try #require(Fixture.failure(#"{"code":"SomethingNew","message":"?","request_id":"r"}"#))
        #expect(failure.failureClass == .transient)
        #expect(failure.isUnknownCode)
        #expect(failure.requestID == "r")
    }

    @Test func treatsANumericNonZeroCodeAsAnError() throws {
        let failure = try #require(Fixture.failure(#"{"code":15,"message":"x"}"#))
        #expect(failure.code == "15")
        #expect(failure.isUnknownCode)
    }

    // MARK: Bodies that are not what the protocol promises

    @Test func classifiesAnHTMLPageWithSuccessStatusAsNonJSON() throws {
        let failure = try #require(Fixture.failure("<html><body>Service Unavailable</body></html>"))
        #expect(failure.code == IOPFailureCode.nonJSONResponse)
        #expect(failure.failureClass == .transient)
        #expect(failure.httpStatus == 200)
    }

    @Test func classifiesAnHTMLPageByItsHTTPStatus() throws {
        let bad = try #require(Fixture.failure("<html>502 Bad Gateway</html>", status: 502))
        #expect(bad.code == "HTTP502")
        #expect(bad.failureClass == .transient)
        #expect(bad.httpStatus == 502)
        let missing = try #require(Fixture.failure("<html>Not Found</html>", status: 404))
        #expect(missing.code == "HTTP404")
        #expect(missing.failureClass == .configuration)
    }

    @Test func classifiesHTTP429WithRetryAfterAsThrottled() throws {
        let failure = try #require(
            Fixture.failure("", status: 429, headers: [(name: "Retry-After", value: "12")]))
        #expect(failure.failureClass == .throttled(retryAfter: .seconds(12)))
        let dated = try #require(
            Fixture.failure(
                "", status: 429,
                headers: [
                    (name: "Date", value: "Tue, 14 Nov 2023 22:13:20 GMT"),
                    (name: "Retry-After", value: "Tue, 14 Nov 2023 22:13:50 GMT"),
                ]))
        #expect(dated.failureClass == .throttled(retryAfter: .seconds(30)))
    }

    @Test func classifiesAJSONBodyWithoutEnvelopeByItsHTTPStatus() throws {
        let failure = try #require(Fixture.failure(#"{"error":"bad gateway","request_id":"r9"}"#, status: 503))
        #expect(failure.code == "HTTP503")
        #expect(failure.failureClass == .transient)
        #expect(failure.requestID == "r9")
        #expect(Fixture.failure(#"{"hello":"world"}"#)?.code == IOPFailureCode.malformedResponse)
    }

    @Test func classifiesTruncatedJSONAsMalformed() throws {
        let truncated = String(Self.vendorSample.prefix(200))
        let failure = try #require(Fixture.failure(truncated))
        #expect(failure.code == IOPFailureCode.malformedResponse)
        #expect(failure.failureClass == .transient)
        #expect(failure.message.contains("not valid JSON"))
    }

    @Test(arguments: ["[]", "[1,2]", "\"text\"", "42", "null", "true"])
    func classifiesJSONThatIsNotAnObjectAsMalformed(body: String) throws {
        let failure = try #require(Fixture.failure(body))
        #expect(failure.failureClass == .transient)
        #expect([IOPFailureCode.malformedResponse, IOPFailureCode.nonJSONResponse].contains(failure.code))
    }

    @Test(arguments: ["", "   ", "\u{FEFF}x", "\0\0\0"])
    func classifiesEmptyOrBinaryBodiesAsNonJSON(body: String) throws {
        let failure = try #require(Fixture.failure(body))
        #expect(failure.code == IOPFailureCode.nonJSONResponse)
    }

    @Test func refusesAnOversizedBodyUnread() throws {
        let body = Self.vendorSample + String(repeating: " ", count: 2048)
        let decoded = Fixture.decode(body, limit: 1024)
        guard case .failure(let failure) = decoded else {
            Issue.record("an oversized body was decoded")
            return
        }
        #expect(failure.code == IOPFailureCode.responseTooLarge)
        #expect(failure.failureClass == .transient)
        #expect(failure.httpStatus == 200)
    }

    @Test func survivesDeeplyNestedJSON() throws {
        let depth = 100_000
        let body = "{\"code\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
        let failure = try #require(Fixture.failure(body))
        #expect(failure.failureClass == .transient)
    }

    @Test func survivesOddTypesInEveryField() throws {
        let body = """
            {"code":{"a":1},"type":[1],"message":{"x":"y"},"request_id":7,"error_response":"nope",\
            "access_token":["t"],"seller_id":true}
            """
        let failure = try #require(Fixture.failure(body))
        #expect(failure.failureClass == .transient)
    }

    // MARK: Secrets

    @Test func neverPutsATokenIntoAFailure() throws {
        let refreshToken = Secret(Fixture.refreshToken)
        let bodies = [
            // A gateway that echoes the token it refused.
            #"{"code":"IllegalRefreshToken","message":"refresh token \#(Fixture.refreshToken) is invalid"}"#,
            #"{"error_response":{"code":"X","msg":"bad \#(Fixture.refreshToken)"}}"#,
            // Error bodies that carry tokens anyway.
            #"{"code":"X","message":"\#(Fixture.accessToken)","access_token":"\#(Fixture.accessToken)"}"#,
            // A grant cut short, and a success that carries no token but echoes one in its message.
            String(Self.vendorSample.prefix(400)),
            #"{"code":"0","expires_in":60,"message":"\#(Fixture.refreshToken)"}"#,
        ]
        for body in bodies {
            let failure = try #require(Fixture.failure(body, redacting: [refreshToken]))
            // Computed apart so that a failing expectation does not print the token itself.
            let leaks = [failure.description, failure.message, String(reflecting: failure)].filter {
                $0.contains(Fixture.refreshToken) || $0.contains(Fixture.accessToken)
            }
            #expect(leaks.isEmpty, "a token leaked into the failure \(failure.code)")
        }
        let echoed = try #require(Fixture.failure(bodies[0], redacting: [refreshToken]))
        #expect(echoed.message.contains(refreshToken.fingerprint))
    }

    @Test func keepsGatewayMessagesToOneBoundedLine() throws {
        let long = String(repeating: "x", count: 5000)
        let failure = try #require(Fixture.failure(#"{"code":"X","message":"line1\nline2 \#(long)"}"#))
        #expect(!failure.message.contains("\n"))
        #expect(failure.message.count <= IOPResponseDecoder.maxMessageLength + 1)
    }
}
