import Testing
import TokenKeeperCore

@testable import IOPGateway

@Suite struct IOPFailureClassifierTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var code: String
        var type: String?
        var expected: FailureClass
        var unknown = false
        var testDescription: String { "\(code)/\(type ?? "-")" }
    }

    static let table: [Case] = [
        Case(code: "IllegalRefreshToken", type: "ISV", expected: .accountRejected),
        Case(code: "AUTH_TYPE_UNSUPPORTED", type: nil, expected: .accountRejected),
        Case(code: "IncompleteSignature", type: "ISV", expected: .configuration),
        Case(code: "InvalidAppKey", type: "ISV", expected: .configuration),
        Case(code: "MissingAppKey", type: "ISV", expected: .configuration),
        Case(code: "InvalidApiPath", type: "ISV", expected: .configuration),
        Case(code: "MissingParameter", type: "ISV", expected: .configuration),
        Case(code: "IllegalTimestamp", type: "ISV", expected: .configuration),
        Case(code: "ApiCallLimit", type: "ISV", expected: .throttled(retryAfter: .seconds(1))),
        Case(code: "AppCallLimit", type: "ISP", expected: .throttled(retryAfter: .seconds(1))),
        Case(code: "ServiceTimeout", type: "ISP", expected: .transient),
        Case(code: "ServiceTimeout", type: nil, expected: .transient),
        Case(code: "InternalError", type: "ISP", expected: .transient),
        Case(code: "SystemBusy", type: "SYSTEM", expected: .transient),
        Case(code: "SystemBusy", type: "system", expected: .transient),
        Case(code: "SomethingNew", type: "ISV", expected: .transient, unknown: true),
        Case(code: "SomethingNew", type: nil, expected: .transient, unknown: true),
        // Codes that resemble the dead-token ones must not cost a seller anything.
        Case(code: "IllegalAccessToken", type: "ISV", expected: .transient, unknown: true),
        Case(code: "illegalrefreshtoken", type: "ISV", expected: .transient, unknown: true),
    ]

    @Test(arguments: table)
    func classifiesEveryListedCode(entry: Case) {
        let failure = IOPFailureClassifier.classify(
            code: entry.code, type: entry.type, message: "m", requestID: "req-1", httpStatus: 200)
        #expect(failure.failureClass == entry.expected)
        #expect(failure.isUnknownCode == entry.unknown)
        #expect(failure.code == entry.code)
        #expect(failure.requestID == "req-1")
        #expect(failure.httpStatus == 200)
    }

    @Test func onlyTheDocumentedDeadTokenCodesRejectAnAccount() {
        #expect(IOPFailureClassifier.accountRejectedCodes == ["IllegalRefreshToken", "AUTH_TYPE_UNSUPPORTED"])
    }

    @Test(arguments: [
        ("The request has failed due to api call limit, ban will last 3 seconds", 3_000),
        ("ban will last 60 seconds", 60_000),
        ("Ban Will Last 2.5 seconds", 2_500),
        ("ban will last   10 seconds", 10_000),
        ("ban will last 0 seconds", 1_000),
        ("ban will last ten seconds", 1_000),
        ("api call limit", 1_000),
        ("", 1_000),
        ("ban will last 99999999999999999999 seconds", 86_400_000),
    ])
    func parsesTheBanDurationFromTheMessage(message: String, milliseconds: Int64) {
        #expect(IOPFailureClassifier.banDuration(in: message) == .milliseconds(milliseconds))
    }

    @Test func throttlesForTheBanTheMessageStates() {
        let failure = IOPFailureClassifier.classify(
            code: "AppCallLimit", type: "ISV", message: "…, ban will last 42 seconds", requestID: nil, httpStatus: 200)
        #expect(failure.failureClass == .throttled(retryAfter: .seconds(42)))
    }

    @Test(arguments: [
        (500, FailureClass.transient, false), (502, .transient, false), (503, .transient, false),
        (504, .transient, false), (408, .transient, false), (429, .throttled(retryAfter: .seconds(1)), false),
        (301, .configuration, false), (302, .configuration, false), (404, .configuration, false),
        (405, .configuration, false), (410, .configuration, false), (400, .transient, true),
        (401, .transient, true), (403, .transient, true), (418, .transient, true),
    ])
    func classifiesHTTPStatusesWithoutAnIOPError(status: Int, expected: FailureClass, unknown: Bool) {
        let failure = IOPFailureClassifier.classify(httpStatus: status, retryAfter: nil, requestID: "r")
        #expect(failure.failureClass == expected)
        #expect(failure.isUnknownCode == unknown)
        #expect(failure.code == "HTTP\(status)")
        #expect(failure.httpStatus == status)
        #expect(failure.requestID == "r")
    }

    @Test func honoursRetryAfterOn429ButNeverLessThanTheDefaultBan() {
        let later = IOPFailureClassifier.classify(httpStatus: 429, retryAfter: .seconds(30), requestID: nil)
        #expect(later.failureClass == .throttled(retryAfter: .seconds(30)))
        let now = IOPFailureClassifier.classify(httpStatus: 429, retryAfter: .zero, requestID: nil)
        #expect(now.failureClass == .throttled(retryAfter: .seconds(1)))
    }
}
