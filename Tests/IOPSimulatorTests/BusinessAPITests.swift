import AsyncHTTPClient
import Foundation
import IOPGateway
import IOPSimulator
import NIOCore
import NIOHTTP1
import Testing
import TokenKeeperCore
import TokenKeeperTesting

/// Business APIs: every API but the token APIs, under `/rest` or on `/sync`.
/// They pass the same system checks, then need the seller's current access
/// token, and echo what the gateway read.
@Suite("Business APIs")
struct BusinessAPITests {
    static let orderAPI = "/aliexpress/solution/order/get"
    static let otherAppKey = "600200"
    static let otherSecret = "the-other-apps-secret"

    /// 3,079 bytes: every byte value twelve times, then a CRLF and dashes.
    static let fileBody: [UInt8] = Array(repeating: Array(0...255), count: 12).flatMap { $0 } + Array("\r\n--end".utf8)
    /// Its SHA-256, computed with Python's hashlib.
    static let fileDigest = "88bd68f367e26a2ae26d26623b191fef90f1ad3be6b0a0ed87d8f57b1b972d9f"

    @Test(arguments: [CallStyle.lazopPOST, .lazopGET, .java])
    func aCallWithTheSellersCurrentAccessTokenIsServedAndEchoesItsParameters(style: CallStyle) async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            let parameters = ["order_id": "8001", "note": "店 & co = 1+1", "empty": ""]
            let answer = try await h.gateway.business(
                Self.orderAPI, parameters, accessToken: token, style: style)
            #expect(answer.status == 200)
            #expect(answer.isSuccess)
            #expect(answer.string("request_id")?.isEmpty == false)
            #expect(answer.data?["api"] as? String == Self.orderAPI)
            #expect(answer.data?["seller_id"] as? String == "1001")
            // System parameters (app_key, access_token, sign, …) are not echoed.
            #expect(answer.echoedParameters == parameters)
            #expect(answer.echoedFiles == [])

            let counters = h.simulator.counters
            #expect(counters.businessCalls == 1)
            #expect(counters.businessCallsServed == 1)
            #expect(counters.businessCallsRejectedForToken == 0)
            #expect(counters.businessCalls(forSeller: "1001") == 1)
            #expect(counters.requests(to: Self.orderAPI) == 1)
            #expect(counters.successes[Self.orderAPI] == 1)
            #expect(h.simulator.counters(forApp: SimulatorHarness.appKey).businessCallsServed == 1)
        }
    }

    @Test func theSameCallGetsTheSameAnswerButForItsRequestID() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            let first = try await h.gateway.business("/orders/get", ["a": "1"], accessToken: token)
            let second = try await h.gateway.business("/orders/get", ["a": "1"], accessToken: token)
            let firstID = try #require(first.string("request_id"))
            let secondID = try #require(second.string("request_id"))
            #expect(first.isSuccess && firstID != secondID)
            #expect(
                first.text.replacingOccurrences(of: firstID, with: "")
                    == second.text.replacingOccurrences(of: secondID, with: ""))
        }
    }

    @Test func everyOlderAccessTokenIsIllegalOnceTheSellerIsRefreshedOrAuthorizedAgain() async throws {
        try await SimulatorHarness.run { h in
            let seeded = try h.enrolledSeller()
            let refreshed = try await h.gateway.refresh(seeded.refreshToken)
            let refreshedToken = try #require(refreshed.accessToken).exposedValue

            let old = try await h.gateway.business(Self.orderAPI, accessToken: seeded.accessToken.exposedValue)
            #expect(old.errorCode == "IllegalAccessToken")
            #expect(old.errorType == "ISV")
            #expect(old.errorMessage == "The specified access token is invalid or expired")
            #expect(try await h.gateway.business(Self.orderAPI, accessToken: refreshedToken).isSuccess)

            let created = try await h.gateway.create(code: try h.simulator.issueAuthorizationCode(for: "1001"))
            let createdToken = try #require(created.accessToken).exposedValue
            let superseded = try await h.gateway.business(Self.orderAPI, accessToken: refreshedToken)
            #expect(superseded.errorCode == "IllegalAccessToken")
            #expect(try await h.gateway.business(Self.orderAPI, accessToken: createdToken).isSuccess)

            let counters = h.simulator.counters
            #expect(counters.businessCalls == 4)
            #expect(counters.businessCallsServed == 2)
            #expect(counters.businessCallsRejectedForToken == 2)
            #expect(counters.rejections("IllegalAccessToken") == 2)
            #expect(counters.businessCalls(forSeller: "1001") == 2)
        }
    }

    @Test func anExpiredAccessTokenIsIllegal() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue  // 600 s
            h.clock.advance(by: .seconds(599))
            #expect(try await h.gateway.business(Self.orderAPI, accessToken: token).isSuccess)
            h.clock.advance(by: .seconds(1))
            let expired = try await h.gateway.business(Self.orderAPI, accessToken: token)
            #expect(expired.errorCode == "IllegalAccessToken")
            #expect(h.simulator.counters.businessCallsRejectedForToken == 1)
        }
    }

    @Test func anAccessTokenIssuedForAnotherAppIsIllegal() async throws {
        try await SimulatorHarness.run(otherApps: [Self.otherAppKey: Self.otherSecret]) { h in
            h.simulator.addSeller(sellerID: "2002", appKey: Self.otherAppKey)
            let token = try h.simulator.seedTokens(for: "2002").accessToken.exposedValue
            let refused = try await h.gateway.business(Self.orderAPI, accessToken: token)
            #expect(refused.errorCode == "IllegalAccessToken")

            let otherApp = h.gateway(appKey: Self.otherAppKey, secret: Self.otherSecret)
            let served = try await otherApp.business(Self.orderAPI, accessToken: token)
            #expect(served.data?["seller_id"] as? String == "2002")
            #expect(h.simulator.counters(forApp: SimulatorHarness.appKey).businessCallsRejectedForToken == 1)
            #expect(h.simulator.counters(forApp: Self.otherAppKey).businessCalls(forSeller: "2002") == 1)
        }
    }

    @Test func anUnknownOrMissingAccessTokenIsRefused() async throws {
        try await SimulatorHarness.run { h in
            try h.enrolledSeller()
            let unknown = try await h.gateway.business(Self.orderAPI, accessToken: "50000not-issued-here")
            #expect(unknown.errorCode == "IllegalAccessToken")
            let missing = try await h.gateway.business(Self.orderAPI, accessToken: nil)
            #expect(missing.errorCode == "MissingParameter")
            #expect(missing.errorMessage?.contains("\"access_token\"") == true)
            let missingSession = try await h.gateway.business(
                "aliexpress.solution.order.get", accessToken: nil, style: .sync)
            #expect(missingSession.errorMessage?.contains("\"session\"") == true)
            #expect(h.simulator.counters.businessCallsRejectedForToken == 3)
            #expect(h.simulator.counters.businessCallsServed == 0)
        }
    }

    @Test func aBadSignatureIsRefusedBeforeTheAccessTokenIsLookedAt() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            let wrongSecret = try await h.gateway.business(
                Self.orderAPI, ["a": "1"], accessToken: token, signWith: "not-the-secret")
            let changed = try await h.gateway.business(Self.orderAPI, ["a": "1"], accessToken: token) {
                $0["a"] = "2"
            }
            // Signed over an empty value that was then left out.
            let dropped = try await h.gateway.business(Self.orderAPI, ["a": "1", "b": ""], accessToken: token) {
                $0["b"] = nil
            }
            // The signature of one API sent to another.
            let moved = try await h.gateway.business(Self.orderAPI, accessToken: token) {
                $0["sign"] = IOPSignature.sign(apiPath: "/orders/get", parameters: $0, secret: SimulatorHarness.secret)
            }
            for answer in [wrongSecret, changed, dropped, moved] {
                #expect(answer.errorCode == "IncompleteSignature")
            }
            let counters = h.simulator.counters
            #expect(counters.businessCalls == 4)
            #expect(counters.businessCallsRejectedForToken == 0)
            #expect(counters.businessCallsServed == 0)
        }
    }

    @Test func theTokenAPIsStillRefuseASignatureOverEmptyValues() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let answer = try await h.gateway.call("/auth/token/refresh", ["refresh_token": token.exposedValue]) {
                var signed = $0.merging(["refresh_token": token.exposedValue, "empty": ""]) { system, _ in system }
                signed["sign"] = nil
                $0["sign"] = IOPSignature.sign(
                    apiPath: "/auth/token/refresh", parameters: signed, secret: SimulatorHarness.secret,
                    includingEmptyValues: true)
                $0["empty"] = ""
            }
            #expect(answer.errorCode == "IncompleteSignature")
            #expect(h.simulator.currentRefreshToken(for: "1001") == token)
        }
    }

    @Test func theSyncFormNamesItsAPIInMethodAndSignsNoPath() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            let api = "aliexpress.solution.order.get"
            let answer = try await h.gateway.business(api, ["order_id": "8001"], accessToken: token, style: .sync)
            #expect(answer.isSuccess)
            #expect(answer.data?["api"] as? String == api)
            #expect(answer.echoedParameters == ["order_id": "8001"])
            #expect(h.simulator.counters.requests(to: api) == 1)
            #expect(h.simulator.counters.businessCalls(forSeller: "1001") == 1)

            let signedWithAPath = try await h.gateway.business(api, accessToken: token, style: .sync) {
                $0["sign"] = IOPSignature.sign(apiPath: "/sync", parameters: $0, secret: SimulatorHarness.secret)
            }
            #expect(signedWithAPath.errorCode == "IncompleteSignature")
            let noMethod = try await h.gateway.business(api, accessToken: token, style: .sync) { $0["method"] = nil }
            #expect(noMethod.errorCode == "MissingParameter")
            #expect(noMethod.errorMessage?.contains("\"method\"") == true)
            #expect(h.simulator.address?.syncURL.hasSuffix("/sync") == true)
        }
    }

    @Test func aMultipartUploadIsSignedWithoutItsFilesAndEchoesEachFile() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            let files = [
                IOPForm.FilePart(name: "image", filename: "photo ✓.png", contentType: "image/png", body: Self.fileBody),
                IOPForm.FilePart(name: "manual", filename: "", body: []),
            ]
            let answer = try await h.gateway.business(
                "/image/upload", ["title": "a \"b\"", "empty": ""], accessToken: token, files: files)
            #expect(answer.isSuccess)
            #expect(answer.echoedParameters == ["title": "a \"b\"", "empty": ""])
            #expect(
                answer.echoedFiles == [
                    ["name": "image", "filename": "photo ✓.png", "size": "3079", "sha256": Self.fileDigest],
                    [
                        "name": "manual", "filename": "", "size": "0",
                        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    ],
                ])
            #expect(h.simulator.counters.businessCallsServed == 1)
        }
    }

    @Test func aBodyThatDoesNotParseIsABadRequest() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            let cut = try await h.gateway.send(
                Self.post(
                    h.gateway.baseURL + "/image/upload?access_token=\(token)",
                    contentType: "multipart/form-data; boundary=xyz", body: "--xyz\r\nContent-Disposition: form-data"))
            #expect(cut.status == 400)
            #expect(cut.errorCode == "InvalidParameter")
            #expect(cut.errorMessage?.contains("closing boundary") == true)
            let noBoundary = try await h.gateway.send(
                Self.post(h.gateway.baseURL + "/image/upload", contentType: "multipart/form-data", body: ""))
            #expect(noBoundary.status == 400)
            #expect(noBoundary.errorMessage?.contains("no boundary") == true)
            #expect(h.simulator.counters.rejections("InvalidParameter") == 2)
            #expect(h.simulator.counters.businessCalls == 0)
        }
    }

    @Test func anInvalidatedAccessTokenIsIllegalUntilARefreshIssuesANewOne() async throws {
        try await SimulatorHarness.run { h in
            let pair = try h.enrolledSeller()
            #expect(try await h.gateway.business(Self.orderAPI, accessToken: pair.accessToken.exposedValue).isSuccess)
            try h.simulator.invalidateAccessToken(for: "1001")
            let refused = try await h.gateway.business(Self.orderAPI, accessToken: pair.accessToken.exposedValue)
            #expect(refused.errorCode == "IllegalAccessToken")
            // Not expired: only the gateway's business check refuses it.
            #expect(h.simulator.accessTokenStatus(pair.accessToken).isValid)

            let refreshed = try await h.gateway.refresh(pair.refreshToken)
            #expect(refreshed.isSuccess)
            let fresh = try #require(refreshed.accessToken).exposedValue
            #expect(try await h.gateway.business(Self.orderAPI, accessToken: fresh).isSuccess)
            #expect(throws: IOPSimulatorError.unknownSeller("9999")) {
                try h.simulator.invalidateAccessToken(for: "9999")
            }
        }
    }

    @Test func businessCallsMeetTheAppsInjectedFaultsAndItsThrottlingBan() async throws {
        try await SimulatorHarness.run(configure: { $0.throttleBanSeconds = 2 }) { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            h.simulator.injectFaults(.http502, forApp: SimulatorHarness.appKey)
            #expect(try await h.gateway.business(Self.orderAPI, accessToken: token).status == 502)

            h.simulator.injectFaults(.throttled, forApp: SimulatorHarness.appKey)
            let throttled = try await h.gateway.business(Self.orderAPI, accessToken: token)
            #expect(throttled.errorCode == "ApiCallLimit")
            let duringBan = try await h.gateway.business(Self.orderAPI, accessToken: token)
            #expect(duringBan.errorCode == "ApiCallLimit")
            // The token APIs share the app's ban.
            #expect(
                try await h.gateway.refresh(try #require(h.simulator.currentRefreshToken(for: "1001"))).errorCode
                    == "ApiCallLimit")
            h.clock.advance(by: .seconds(2))
            #expect(try await h.gateway.business(Self.orderAPI, accessToken: token).isSuccess)

            let counters = h.simulator.counters
            #expect(counters.faults(.http502) == 1)
            #expect(counters.faults(.throttled) == 1)
            #expect(counters.callsDuringBan == 2)
            #expect(counters.requests(to: Self.orderAPI) == 4)
            #expect(counters.businessCalls == 1)
            #expect(counters.businessCallsServed == 1)
        }
    }

    @Test func aResetAfterRotationServesTheCallAndDropsItsAnswer() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().accessToken.exposedValue
            h.simulator.injectFaults(.resetAfterRotation)
            await #expect(throws: (any Error).self) {
                try await h.gateway.business(Self.orderAPI, accessToken: token)
            }
            let counters = h.simulator.counters
            #expect(counters.faults(.resetAfterRotation) == 1)
            #expect(counters.businessCallsServed == 1)
            #expect(counters.answersNotDelivered == 0)  // it handed out no tokens
        }
    }

    /// A POST with a body as given, for bodies no SDK would send.
    private static func post(_ url: String, contentType: String, body: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: contentType)
        request.body = .bytes(ByteBuffer(string: body))
        return request
    }
}
