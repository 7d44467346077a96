import Foundation
import IOPGateway
import TokenKeeperCore

// Input layout: the first byte picks the HTTP status from `statuses` (the seeds
// use "T" for 200, "o" 400, "w" 429, "y" 502). If the rest holds a NUL byte,
// what comes before the first one is a header block ("Name: value" lines, so
// `Date` and `Retry-After` get parsed too) and what follows is the body;
// otherwise the rest is the body.
//
// Checked: the decoder never crashes (it promises an outcome for every byte
// sequence), and a failure's message never holds a top-level access_token or
// refresh_token of the body (8 characters or more) or the refresh token we
// sent (it promises to replace them by their fingerprints). The failure's
// code and request id are the gateway's own words and are not checked.

private let statuses = [
    200, 200, 201, 204, 301, 302, 400, 401, 403, 404, 405, 408, 410, 425, 429, 500, 502, 503, 504, 0, 999,
]
private let receivedAt = Timestamp(millisecondsSince1970: 1_700_000_000_000)
private let sentRefreshToken = Secret("50001600fuzz0sent0refresh0token0000000000")

/// The top-level tokens as the decoder sees them: JSON strings only, since a
/// number there is not a token the gateway issued.
private struct BodyTokens: Decodable {
    var tokens: [String] = []

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case refreshToken = "refresh_token"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        for key in [CodingKeys.accessToken, .refreshToken] {
            if let value = try? container.decodeIfPresent(String.self, forKey: key) { tokens.append(value) }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let selector = input.first else { return 0 }
    let status = statuses[Int(selector) % statuses.count]
    var rest = input.dropFirst()
    var headers: [(name: String, value: String)] = []
    if let separator = rest.firstIndex(of: 0) {
        let block = String(decoding: rest[..<separator], as: UTF8.self)
        for line in block.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " })))
        }
        rest = rest[rest.index(after: separator)...]
    }
    let body = Array(rest)

    switch IOPResponseDecoder().decode(
        status: status, headers: headers, body: body, receivedAt: receivedAt, redacting: [sentRefreshToken])
    {
    case .success(let grant):
        // The daemon logs these; a wrapped-around timestamp must still format.
        _ = grant.expireTime.description
        _ = grant.refreshTokenValidTime?.description
    case .failure(let failure):
        var secrets = [sentRefreshToken.exposedValue]
        if let tokens = try? JSONDecoder().decode(BodyTokens.self, from: Data(body)) {
            secrets += tokens.tokens
        }
        let message = Array(failure.message.utf8)
        for secret in secrets where secret.count >= 8 {
            let needle = Array(secret.utf8)
            if message.count >= needle.count,
                (0...(message.count - needle.count)).contains(where: {
                    message[$0..<($0 + needle.count)].elementsEqual(needle)
                })
            {
                fatalError("a failure's message holds a token of the answer: \(failure.code)")
            }
        }
    }
    return 0
}
