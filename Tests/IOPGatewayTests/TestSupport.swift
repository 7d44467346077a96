import Logging
import Synchronization
import TokenKeeperCore
import TokenKeeperTesting

@testable import IOPGateway

/// Test fixtures. The tokens are fake but shaped like the gateway's.
enum Fixture {
    static let accessToken = "50000601c30atpedfgu3LVvik87Ixlsvle3mSoB7701ceb156fPunYZ43GBg"
    static let refreshToken = "500016000300bwa2WteaQyfwBMnPxurcA0mXGhQdTt18356663CfcDTYpWoi"
    static let receivedAt = Timestamp(millisecondsSince1970: 1_700_000_000_000)

    static let configuration = GatewayConfiguration(
        baseURL: "https://api-sg.aliexpress.com/rest", appKey: "12345678", appSecret: Secret("helloworld"))

    static func decode(
        _ body: String, status: Int = 200, headers: [(name: String, value: String)] = [],
        redacting: [Secret] = [], limit: Int = 1 << 20
    ) -> Result<TokenGrant, GatewayFailure> {
        IOPResponseDecoder(maxResponseBytes: limit).decode(
            status: status, headers: headers, body: Array(body.utf8), receivedAt: receivedAt, redacting: redacting)
    }

    static func failure(
        _ body: String, status: Int = 200, headers: [(name: String, value: String)] = [],
        redacting: [Secret] = []
    ) -> GatewayFailure? {
        if case .failure(let failure) = decode(body, status: status, headers: headers, redacting: redacting) {
            return failure
        }
        return nil
    }

    static func grant(_ body: String, status: Int = 200, headers: [(name: String, value: String)] = [])
        -> TokenGrant?
    {
        try? decode(body, status: status, headers: headers).get()
    }
}

/// `a=1&b=2` into a dictionary, percent-decoded, for checking what was sent.
func formDecode(_ text: String) -> [String: String] {
    var result: [String: String] = [:]
    for pair in text.split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        result[percentDecode(String(parts[0]))] = parts.count > 1 ? percentDecode(String(parts[1])) : ""
    }
    return result
}

func percentDecode(_ text: String) -> String {
    var bytes: [UInt8] = []
    var utf8 = Array(text.utf8)[...]
    while let byte = utf8.popFirst() {
        if byte == UInt8(ascii: "%"), utf8.count >= 2,
            let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
        {
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        } else {
            bytes.append(byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
