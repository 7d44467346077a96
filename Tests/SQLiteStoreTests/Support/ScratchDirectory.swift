import Foundation
import SQLiteStore
import TokenKeeperCore
import TokenKeeperTesting

extension ScratchDirectory {
    var keeperPath: String { file("keeper.db") }
    var tokensPath: String { file("tokens.db") }

    func open(options: SQLiteAccountStore.Options = .init()) async throws -> SQLiteAccountStore {
        try await SQLiteAccountStore.open(directory: path, options: options, clock: FixedClock())
    }
}

struct FixedClock: WallClock {
    func now() -> Timestamp { Moments.now }
}

/// Fixed moments, so that tests do not depend on the machine's clock. Token
/// expiry lies far in the future, so the `valid_tokens` view (which uses
/// SQLite's own clock) sees them as valid.
enum Moments {
    static let now = Timestamp(millisecondsSince1970: 1_800_000_000_000)
    static let farFuture = Timestamp(millisecondsSince1970: 4_102_444_800_000)  // 2100-01-01
    static let past = Timestamp(millisecondsSince1970: 1_000_000_000_000)
}

/// Unique token values, so that a byte scan of a file for one cannot match by accident.
enum Tokens {
    static func refresh(_ label: String = "") -> Secret {
        Secret("RT-\(label)-\(UUID().uuidString)")
    }

    static func access(_ label: String = "") -> Secret {
        Secret("AT-\(label)-\(UUID().uuidString)")
    }
}

func makeGrant(
    seller: String, access: Secret = Tokens.access(), refresh: Secret = Tokens.refresh(),
    expireTime: Timestamp = Moments.farFuture, refreshTokenValidTime: Timestamp? = Moments.farFuture + .seconds(86_400),
    refreshLifetime: Duration = .seconds(86_400 * 30), receivedAt: Timestamp = Moments.now,
    profile: SellerProfile = SellerProfile(userNick: "nick"), requestID: String? = "req-1"
) -> TokenGrant {
    TokenGrant(
        sellerID: seller, profile: profile, accessToken: access, refreshToken: refresh,
        accessTokenLifetime: .seconds(86_400), refreshTokenLifetime: refreshLifetime, expireTime: expireTime,
        refreshTokenValidTime: refreshTokenValidTime, receivedAt: receivedAt, requestID: requestID)
}

extension Data {
    /// True when `needle` occurs anywhere in these bytes.
    func contains(_ needle: String) -> Bool {
        range(of: Data(needle.utf8)) != nil
    }
}
