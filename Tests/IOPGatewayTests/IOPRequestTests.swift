import Testing
import TokenKeeperCore

@testable import IOPGateway

@Suite struct IOPRequestTests {
    static let timestamp = Timestamp(millisecondsSince1970: 1_517_820_392_000)

    func parts(_ request: IOPRequest) -> (base: String, query: [String: String]) {
        let split = request.url.split(separator: "?", maxSplits: 1).map(String.init)
        return (split[0], formDecode(split.count > 1 ? split[1] : ""))
    }

    @Test func putsSystemParametersInTheQueryAndTheRefreshTokenInTheBody() throws {
        let request = try IOPRequest.refresh(
            refreshToken: Secret(Fixture.refreshToken), configuration: Fixture.configuration, timestamp: Self.timestamp)
        let (base, query) = parts(request)
        #expect(base == "https://api-sg.aliexpress.com/rest/auth/token/refresh")
        #expect(request.apiPath == "/auth/token/refresh")
        #expect(
            query == [
                "app_key": "12345678", "timestamp": "1517820392000", "sign_method": "sha256",
                "partner_id": "tokenkeeper", "sign": request.signature,
            ])
        #expect(formDecode(request.body) == ["refresh_token": Fixture.refreshToken])
        #expect(!request.url.contains(Fixture.refreshToken))
        #expect(IOPRequest.method == "POST")
        #expect(
            request.headers.contains(
                IOPRequest.Header(name: "Content-Type", value: "application/x-www-form-urlencoded;charset=UTF-8")))
    }

    @Test func signsQueryAndBodyTogetherAsTheGatewayVerifies() throws {
        let request = try IOPRequest.createToken(
            code: "3_500102_JxZ05Ux3cnnSSUm6dCxYg6Q26", configuration: Fixture.configuration,
            timestamp: Self.timestamp)
        var all = parts(request).query
        let removed = all.removeValue(forKey: "sign")
        let sent = try #require(removed)
        all.merge(formDecode(request.body)) { old, _ in old }
        #expect(
            IOPSignature.verify(signature: sent, apiPath: "/auth/token/create", parameters: all, secret: "helloworld"))
        #expect(sent.count == 64 && sent == sent.uppercased())
    }

    @Test func reproducesTheKnownAnswerWithoutPartnerID() throws {
        var configuration = Fixture.configuration
        configuration.partnerID = ""
        let request = try IOPRequest.createToken(
            code: "3_500102_JxZ05Ux3cnnSSUm6dCxYg6Q26", configuration: configuration, timestamp: Self.timestamp)
        #expect(request.signature == IOPSignatureTests.knownSignature)
        #expect(parts(request).query["partner_id"] == nil)
    }

    @Test func neitherSendsNorSignsEmptyValues() throws {
        let request = try IOPRequest(
            apiPath: "/auth/token/create", apiParameters: ["code": "abc", "state": ""],
            configuration: Fixture.configuration, timestamp: Self.timestamp)
        #expect(request.body == "code=abc")
        var signed = parts(request).query
        signed.removeValue(forKey: "sign")
        signed["code"] = "abc"
        #expect(
            request.signature
                == IOPSignature.sign(apiPath: "/auth/token/create", parameters: signed, secret: "helloworld"))
    }

    @Test func percentEncodesReservedAndNonASCIICharactersButSignsRawValues() throws {
        let raw = "a b+c&d=e/f?g%h~i.j_k-l€"
        let request = try IOPRequest(
            apiPath: "/auth/token/create", apiParameters: ["code": raw], configuration: Fixture.configuration,
            timestamp: Self.timestamp)
        #expect(request.body == "code=a%20b%2Bc%26d%3De%2Ff%3Fg%25h~i.j_k-l%E2%82%AC")
        #expect(formDecode(request.body)["code"] == raw)
        var signed = parts(request).query
        signed.removeValue(forKey: "sign")
        signed["code"] = raw
        #expect(
            request.signature
                == IOPSignature.sign(apiPath: "/auth/token/create", parameters: signed, secret: "helloworld"))
    }

    @Test func encodesAnAppKeyWithReservedCharactersInTheQuery() throws {
        var configuration = Fixture.configuration
        configuration.appKey = "key&x=1"
        let request = try IOPRequest.createToken(code: "c", configuration: configuration, timestamp: Self.timestamp)
        #expect(request.url.contains("app_key=key%26x%3D1&"))
        #expect(parts(request).query["app_key"] == "key&x=1")
        #expect(parts(request).query["x"] == nil)
    }

    @Test func joinsBaseURLAndPathWithExactlyOneSlashAndKeepsThePort() throws {
        var configuration = Fixture.configuration
        configuration.baseURL = "http://127.0.0.1:8099/rest/"
        configuration.refreshPath = "/custom/refresh"
        let request = try IOPRequest.refresh(
            refreshToken: Secret("r"), configuration: configuration, timestamp: Self.timestamp)
        #expect(parts(request).base == "http://127.0.0.1:8099/rest/custom/refresh")
        #expect(request.apiPath == "/custom/refresh")
    }

    @Test func keepsTheQueryInByteOrderSoTheWireFormIsDeterministic() throws {
        let request = try IOPRequest.refresh(
            refreshToken: Secret("r"), configuration: Fixture.configuration, timestamp: Self.timestamp)
        let keys = request.url.split(separator: "?")[1].split(separator: "&").map { $0.split(separator: "=")[0] }
        #expect(keys == ["app_key", "partner_id", "sign", "sign_method", "timestamp"])
    }

    @Test func apiParametersCannotOverrideSystemParameters() throws {
        let request = try IOPRequest(
            apiPath: "/x", apiParameters: ["app_key": "evil", "sign": "X", "code": "c"],
            configuration: Fixture.configuration, timestamp: Self.timestamp)
        #expect(request.body == "code=c")
        #expect(parts(request).query["app_key"] == "12345678")
    }

    @Test func describesItselfWithoutTheToken() throws {
        let request = try IOPRequest.refresh(
            refreshToken: Secret(Fixture.refreshToken), configuration: Fixture.configuration, timestamp: Self.timestamp)
        #expect(!request.description.contains(Fixture.refreshToken))
        #expect(!"\(request)".contains("helloworld"))
    }

    @Test(arguments: [
        "ftp://host/rest", "api-sg.aliexpress.com/rest", "https:///rest", "https://h/rest?x=1", "https://u:p@h/rest",
        "",
    ])
    func refusesAnUnusableBaseURLAsConfiguration(baseURL: String) {
        var configuration = Fixture.configuration
        configuration.baseURL = baseURL
        #expect(throws: GatewayFailure.self) {
            try IOPRequest.refresh(refreshToken: Secret("r"), configuration: configuration, timestamp: Self.timestamp)
        }
        do {
            _ = try IOPRequest.refresh(
                refreshToken: Secret("r"), configuration: configuration, timestamp: Self.timestamp)
        } catch {
            #expect(error.failureClass == .configuration)
            #expect(error.code == IOPFailureCode.invalidConfiguration)
        }
    }

    @Test func validationNamesWhatIsWrong() {
        var configuration = Fixture.configuration
        configuration.appSecret = Secret("")
        #expect(throws: GatewayFailure.self) { try configuration.validate() }
        configuration = Fixture.configuration
        configuration.refreshPath = "auth/token/refresh"
        do {
            try configuration.validate()
            Issue.record("a path without a leading slash was accepted")
        } catch {
            #expect(error.message.contains("refresh path"))
        }
        #expect(throws: Never.self) { try Fixture.configuration.validate() }
    }
}
