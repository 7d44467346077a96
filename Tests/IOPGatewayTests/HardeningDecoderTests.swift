import AsyncHTTPClient
import Testing
import TokenKeeperCore

@testable import IOPGateway

/// What the fuzzers and the hardening issue found: tokens hidden in odd places
/// of an answer, absurd times, and which failures may have rotated a token.
@Suite struct HardeningDecoderTests {
    @Test func aTokenEchoedAsTheCodeOrRequestIDIsRedacted() throws {
        let token = "50001600echoed0token0000000000000"
        let body = #"{"code":"\#(token)","message":"x","request_id":"\#(token)"}"#
        let failure = try #require(Fixture.failure(body, redacting: [Secret(token)]))
        let leaked = [failure.code, failure.requestID ?? "", failure.description].contains { $0.contains(token) }
        #expect(!leaked)
    }

    @Test func aTokenSpeltWithATabInTheMessageIsRedacted() throws {
        let body = #"{"code":"X","message":"abcd\tefgh ijkl","access_token":"abcd efgh ijkl"}"#
        let failure = try #require(Fixture.failure(body))
        #expect(!failure.message.contains("abcd efgh ijkl"))
        #expect(!failure.message.contains("abcd\tefgh"))
    }

    @Test func absurdTimesNeverTrapWhenFormatted() {
        for milliseconds in [Int64.min, Int64.min + 8, -1, Int64.max, 253_402_300_800_000] {
            let text = Timestamp(millisecondsSince1970: milliseconds).description
            #expect(text.count == 24, "\(text)")
        }
        #expect(Timestamp(millisecondsSince1970: Int64.min).description == "0001-01-01T00:00:00.000Z")
    }

    @Test func failuresAfterTheRequestWasSentMayHaveRotatedTheToken() {
        let lost: [any Error] = [
            HTTPClientError.deadlineExceeded, HTTPClientError.readTimeout, HTTPClientError.remoteConnectionClosed,
        ]
        for error in lost {
            #expect(IOPGatewayClient.failure(for: error).answerMayBeLost, "\(error)")
        }
        let neverSent: [any Error] = [
            HTTPClientError.connectTimeout, HTTPClientError.getConnectionFromPoolTimeout, CancellationError(),
        ]
        for error in neverSent {
            #expect(!IOPGatewayClient.failure(for: error).answerMayBeLost, "\(error)")
        }
        #expect(IOPFailureClassifier.classify(httpStatus: 504, retryAfter: nil, requestID: nil).answerMayBeLost)
        #expect(!IOPFailureClassifier.classify(httpStatus: 503, retryAfter: nil, requestID: nil).answerMayBeLost)
    }
}
