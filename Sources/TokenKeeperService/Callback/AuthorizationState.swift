import Crypto
import Foundation
public import TokenKeeperCore

/// The `state` an authorization URL carries: the seller it was made for, when
/// it was issued and a random nonce, signed with HMAC-SHA256 under a key of
/// tokenkeeper's own (kept in keeper.db). The callback accepts a state only
/// if the signature holds, it is younger than its time to live, and its
/// nonce was never used (checked against keeper.db).
///
/// Format: `base64url(seller_id|issued_ms|nonce|app).base64url(mac)`; a
/// state a single-app release signed has no `|app` and is the default
/// app's. Opaque to the gateway, which returns it unchanged.
public struct AuthorizationState: Sendable, Equatable {
    /// The app whose authorization page the link opens: its callback path
    /// must be the one the seller comes back to.
    public var app: AppName
    public var sellerID: String
    public var issuedAt: Timestamp
    /// 128 random bits, hex.
    public var nonce: String

    public init(app: AppName = .default, sellerID: String, issuedAt: Timestamp, nonce: String) {
        self.app = app
        self.sellerID = sellerID
        self.issuedAt = issuedAt
        self.nonce = nonce
    }

    /// A new state for `account` with a fresh nonce.
    public static func issue(
        for account: AccountKey, at now: Timestamp, using random: inout some RandomNumberGenerator
    ) -> AuthorizationState {
        let nonce = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &random)) }.joined()
        return AuthorizationState(app: account.app, sellerID: account.sellerID, issuedAt: now, nonce: nonce)
    }

    /// True for a nonce ``issue(for:at:using:)`` makes: 32 hex digits.
    static func isNonce(_ text: Substring) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Why a state was refused; each says what the seller or operator does next.
    public enum Rejection: Error, Equatable, CustomStringConvertible {
        case missing
        case forged
        case expired(sellerID: String)
        case replayed(sellerID: String)

        public var description: String {
            switch self {
            case .missing: "the link carries no state: use the authorization link tokenkeeper made"
            case .forged: "the link's state is not one tokenkeeper signed"
            case .expired(let seller):
                "the link for seller \(seller) has expired: ask for a new one (tokenkeeper authorize-url --seller \(seller))"
            case .replayed(let seller):
                "the link for seller \(seller) was already used: ask for a new one (tokenkeeper authorize-url --seller \(seller))"
            }
        }
    }
}

/// Signs and checks ``AuthorizationState``s with one key.
public struct AuthorizationStateSigner: Sendable {
    /// The name of the key in keeper.db's `keys` table.
    public static let keyName = "callback_state"
    private let key: SymmetricKey

    /// - Parameter keyHex: The key as stored (hex); see ``makeKeyHex()``.
    public init(keyHex: String) {
        key = SymmetricKey(data: Self.bytes(fromHex: keyHex))
    }

    /// A new random 256-bit key, hex.
    public static func makeKeyHex() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { bytes in bytes.map { String(format: "%02x", $0) }.joined() }
    }

    public func encode(_ state: AuthorizationState) -> String {
        let payload = Data(
            "\(state.sellerID)|\(state.issuedAt.millisecondsSince1970)|\(state.nonce)|\(state.app)".utf8)
        let mac = Data(HMAC<SHA256>.authenticationCode(for: payload, using: key))
        return Self.base64URL(payload) + "." + Self.base64URL(mac)
    }

    /// The state `text` names, if its signature holds and it is not older
    /// than `ttl` (nor issued in the future beyond a minute of clock skew).
    /// Whether its nonce was used is the caller's check (keeper.db).
    public func decode(_ text: String?, now: Timestamp, ttl: Duration) -> Result<
        AuthorizationState, AuthorizationState.Rejection
    > {
        guard let text, !text.isEmpty else { return .failure(.missing) }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Self.data(base64URL: parts[0]), let mac = Self.data(base64URL: parts[1]),
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key)
        else { return .failure(.forged) }
        // The seller id may itself hold '|': the last fields are ours. A
        // state with the app ends in `|nonce|app`; one signed before there
        // were apps ends in `|issued|nonce` (a number is never a nonce).
        var fields = String(decoding: payload, as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)
        var app = AppName.default
        if fields.count >= 4, AuthorizationState.isNonce(fields[fields.count - 2]),
            let named = AppName(rawValue: String(fields[fields.count - 1]))
        {
            app = named
            fields.removeLast()
        }
        guard fields.count >= 3, let issued = Int64(fields[fields.count - 2]) else { return .failure(.forged) }
        let state = AuthorizationState(
            app: app, sellerID: fields[..<(fields.count - 2)].joined(separator: "|"),
            issuedAt: Timestamp(millisecondsSince1970: issued), nonce: String(fields[fields.count - 1]))
        let age = now - state.issuedAt
        guard age <= ttl, age >= .seconds(-60) else { return .failure(.expired(sellerID: state.sellerID)) }
        return .success(state)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func data(base64URL text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    static func bytes(fromHex hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            if let byte = UInt8(hex[index..<next], radix: 16) { bytes.append(byte) }
            index = next
        }
        return bytes
    }
}
