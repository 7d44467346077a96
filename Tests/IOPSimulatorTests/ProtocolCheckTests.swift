import IOPSimulator
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@Suite("System parameter checks")
struct ProtocolCheckTests {
    @Test func aWrongSecretIsAnIncompleteSignature() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let answer = try await h.gateway.call(
                "/auth/token/refresh", ["refresh_token": token.exposedValue], signWith: "not-the-secret")
            #expect(answer.errorCode == "IncompleteSignature")
            #expect(answer.errorMessage == "The request signature does not conform to platform standards")
            #expect(answer.status == 200)
            // Nothing was consumed.
            #expect(h.simulator.currentRefreshToken(for: "1001") == token)
            #expect(h.simulator.counters.rejections("IncompleteSignature") == 1)
        }
    }

    @Test func aSpoiledOrMissingSignatureIsAnIncompleteSignature() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let spoiled = try await h.gateway.call("/auth/token/refresh", ["refresh_token": token.exposedValue]) {
                $0["sign"] = String(repeating: "A", count: 64)
            }
            let missing = try await h.gateway.call("/auth/token/refresh", ["refresh_token": token.exposedValue]) {
                $0["sign"] = nil
            }
            // A signed parameter changed after signing.
            let changed = try await h.gateway.call("/auth/token/refresh", ["refresh_token": token.exposedValue]) {
                $0["partner_id"] = "someone-else"
            }
            #expect(spoiled.errorCode == "IncompleteSignature")
            #expect(missing.errorCode == "IncompleteSignature")
            #expect(changed.errorCode == "IncompleteSignature")
        }
    }

    @Test func theSignatureIsCheckedCaseInsensitivelyAsHex() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let answer = try await h.gateway.call("/auth/token/refresh", ["refresh_token": token.exposedValue]) {
                $0["sign"] = $0["sign"]?.lowercased()
            }
            #expect(answer.isSuccess)
        }
    }

    @Test func anUnsupportedSignMethodIsRefused() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.call("/auth/token/refresh", ["refresh_token": "x"], signMethod: "md5")
            #expect(answer.errorCode == "IncompleteSignature")
            #expect(answer.errorMessage?.contains("md5") == true)
        }
    }

    @Test func anUnknownAppKeyIsInvalidAndAMissingOneIsMissing() async throws {
        try await SimulatorHarness.run { h in
            let unknown = try await h.gateway.call("/auth/token/refresh", ["refresh_token": "x"]) {
                $0["app_key"] = "999999"
            }
            let missing = try await h.gateway.call("/auth/token/refresh", ["refresh_token": "x"]) {
                $0["app_key"] = nil
            }
            #expect(unknown.errorCode == "InvalidAppKey")
            #expect(missing.errorCode == "MissingAppKey")
        }
    }

    @Test(arguments: [-601, 601])
    func aTimestampOutsideTheWindowIsIllegal(offsetSeconds: Int) async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let answer = try await h.gateway.call(
                "/auth/token/refresh", ["refresh_token": token.exposedValue],
                timestamp: h.clock.now() + .seconds(offsetSeconds))
            #expect(answer.errorCode == "IllegalTimestamp")
            #expect(h.simulator.currentRefreshToken(for: "1001") == token)
        }
    }

    @Test(arguments: [-599, 599])
    func aTimestampInsideTheWindowIsAccepted(offsetSeconds: Int) async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let answer = try await h.gateway.call(
                "/auth/token/refresh", ["refresh_token": token.exposedValue],
                timestamp: h.clock.now() + .seconds(offsetSeconds))
            #expect(answer.isSuccess)
        }
    }

    @Test func theTimestampWindowFollowsTheInjectedClock() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let clientTime = h.clock.now()
            h.clock.advance(by: .seconds(3600))  // the gateway's clock runs an hour ahead
            let answer = try await h.gateway.call(
                "/auth/token/refresh", ["refresh_token": token.exposedValue], timestamp: clientTime)
            #expect(answer.errorCode == "IllegalTimestamp")
            #expect(answer.date == "Wed, 26 Nov 2025 19:40:18 GMT")
        }
    }

    @Test func aNonNumericTimestampIsIllegal() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.call("/auth/token/refresh", ["refresh_token": "x"]) {
                $0["timestamp"] = "2025-11-26 18:40:18"
            }
            #expect(answer.errorCode == "IllegalTimestamp")
        }
    }

    @Test func aMissingRefreshTokenIsAMissingParameter() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.call("/auth/token/refresh", [:])
            #expect(answer.errorCode == "MissingParameter")
            #expect(answer.errorMessage?.contains("refresh_token") == true)
        }
    }

    @Test func anUnknownApiPathIsInvalid() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.call("/auth/token/renew", ["refresh_token": "x"])
            #expect(answer.errorCode == "InvalidApiPath")
            #expect(h.simulator.counters.requests(to: "/auth/token/renew") == 1)
        }
    }

    @Test func aPathOutsideTheRestRootIsNotFound() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.get(path: "/oauth/token")
            #expect(answer.status == 404)
            #expect(h.simulator.counters.rejections("HTTP404") == 1)
        }
    }

    @Test func anOversizedBodyIsRefusedWith413() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.call(
                "/auth/token/refresh", ["refresh_token": String(repeating: "x", count: 100_000)])
            #expect(answer.status == 413)
            #expect(h.simulator.counters.rejections("HTTP413") == 1)
        }
    }

    @Test func getWithEverythingInTheQueryStringWorks() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            let answer = try await h.gateway.call(
                "/auth/token/refresh", ["refresh_token": token.exposedValue], method: "GET")
            #expect(answer.isSuccess)
            #expect(h.simulator.counters.requests(to: "/auth/token/refresh") == 1)
        }
    }
}

@Suite("Answer encodings")
struct EncodingTests {
    static let numericFields = ["expires_in", "refresh_expires_in", "expire_time", "refresh_token_valid_time"]

    @Test func numbersAsStringsModeSendsEveryNumberAsAString() async throws {
        try await SimulatorHarness.run(configure: { $0.numberEncoding = .strings }) { h in
            let answer = try await h.gateway.refresh(try h.enrolledSeller().refreshToken)
            for field in Self.numericFields {
                #expect(answer.isString(field), "\(field)")
                #expect(answer.integer(field) != nil, "\(field)")
            }
            #expect(answer.contains("\"code\":\"0\""))
        }
    }

    @Test func numbersModeSendsJSONNumbers() async throws {
        try await SimulatorHarness.run(configure: { $0.numberEncoding = .numbers }) { h in
            let answer = try await h.gateway.refresh(try h.enrolledSeller().refreshToken)
            for field in Self.numericFields {
                #expect(!answer.isString(field), "\(field)")
                #expect(answer.integer(field) != nil, "\(field)")
            }
        }
    }

    @Test func mixedModeSendsBothFormsIncludingTheCode() async throws {
        try await SimulatorHarness.run(configure: { $0.numberEncoding = .mixed }) { h in
            var token = try h.enrolledSeller().refreshToken
            var sawString = false
            var sawNumber = false
            var sawNumericCode = false
            for _ in 0..<12 {
                let answer = try await h.gateway.refresh(token)
                #expect(answer.isSuccess)
                for field in Self.numericFields {
                    if answer.isString(field) { sawString = true } else { sawNumber = true }
                }
                if answer.contains("\"code\":0") { sawNumericCode = true }
                token = try #require(answer.refreshToken)
            }
            #expect(sawString && sawNumber && sawNumericCode)
        }
    }

    @Test func theEncodingCanChangeWhileRunning() async throws {
        try await SimulatorHarness.run(configure: { $0.numberEncoding = .numbers }) { h in
            let first = try await h.gateway.refresh(try h.enrolledSeller().refreshToken)
            h.simulator.updateBehavior { $0.numberEncoding = .strings }
            let second = try await h.gateway.refresh(try #require(first.refreshToken))
            #expect(!first.isString("expires_in"))
            #expect(second.isString("expires_in"))
        }
    }

    @Test func errorsComeTopLevelByDefault() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.refresh(Secret("unknown"))
            let object = try #require(answer.object)
            #expect(object["type"] as? String == "ISV")
            #expect(object["code"] as? String == "IllegalRefreshToken")
            #expect(object["message"] is String)
            #expect(object["request_id"] is String)
            #expect(object["_trace_id_"] is String)
        }
    }

    @Test func errorsCanComeInTheErrorResponseForm() async throws {
        try await SimulatorHarness.run(configure: { $0.errorEnvelope = .errorResponse }) { h in
            let answer = try await h.gateway.refresh(Secret("unknown"))
            let inner = try #require(answer.object?["error_response"] as? [String: Any])
            #expect(inner["code"] as? String == "IllegalRefreshToken")
            #expect(inner["msg"] is String)
            #expect(inner["request_id"] is String)
            #expect(answer.object?["code"] == nil)
        }
    }

    @Test func theDateHeaderFollowsTheInjectedClock() async throws {
        try await SimulatorHarness.run { h in
            h.clock.set(Timestamp(millisecondsSince1970: 0))
            let answer = try await h.gateway.get(path: "/rest/auth/token/refresh")
            #expect(answer.date == "Thu, 01 Jan 1970 00:00:00 GMT")
            h.clock.set(Timestamp(millisecondsSince1970: 951_782_400_000))  // a leap day
            #expect(try await h.gateway.get(path: "/rest/auth/token/refresh").date == "Tue, 29 Feb 2000 00:00:00 GMT")
        }
    }
}
