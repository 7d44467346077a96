import Foundation
public import SQLiteStore
import TokenKeeperCore

/// Why an import line was refused. Never quotes a token.
public struct ImportLineError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var problem: String

    public var description: String { "line \(line): \(problem)" }
}

/// Parses import lines: one JSON object per line with the gateway's field names
/// (`seller_id` or `user_id`, `refresh_token`, optionally `access_token`,
/// `expire_time`, `refresh_token_valid_time`, `user_nick`, `account`, …), so a
/// saved `/auth/token/create` answer imports as it is.
public enum ImportLineParser {
    /// Epoch milliseconds before 2001-09-09 are almost surely seconds by mistake.
    static let earliestPlausibleMilliseconds: Int64 = 1_000_000_000_000

    /// Parses one line. Blank lines and lines starting with `#` give nil.
    public static func parse(_ line: Substring, number: Int) throws(ImportLineError) -> ImportRecord? {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return nil }
        func refuse(_ problem: String) -> ImportLineError { ImportLineError(line: number, problem: problem) }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw refuse("not a JSON object")
            }
            object = parsed
        } catch let error as ImportLineError {
            throw error
        } catch {
            throw refuse("not valid JSON")
        }
        func text(_ key: String) throws(ImportLineError) -> String? {
            switch object[key] {
            case nil, is NSNull: return nil
            case let value as String: return value.isEmpty ? nil : value
            case let value as NSNumber: return value.stringValue
            default: throw refuse("\(key) must be a string")
            }
        }
        func milliseconds(_ key: String) throws(ImportLineError) -> Timestamp? {
            let value: Int64?
            switch object[key] {
            case nil, is NSNull: return nil
            case let number as NSNumber: value = Int64(exactly: number.doubleValue)
            case let string as String: value = string.isEmpty ? nil : Int64(string)
            default: value = nil
            }
            guard let value else { throw refuse("\(key) must be epoch milliseconds (a whole number)") }
            guard value >= earliestPlausibleMilliseconds else {
                throw refuse("\(key) \(value) looks like seconds; it must be epoch milliseconds")
            }
            return Timestamp(millisecondsSince1970: value)
        }
        let sellerKey = try text("seller_id")
        let userID = try text("user_id")
        guard let sellerID = sellerKey ?? userID else {
            throw refuse("seller_id (or user_id) is missing")
        }
        guard let refreshToken = try text("refresh_token") else {
            throw refuse("refresh_token is missing")
        }
        let accessToken = try text("access_token")
        let expireTime = try milliseconds("expire_time")
        if accessToken != nil && expireTime == nil {
            throw refuse("access_token is given without expire_time")
        }
        return ImportRecord(
            sellerID: sellerID, refreshToken: Secret(refreshToken), accessToken: accessToken.map(Secret.init),
            expireTime: accessToken == nil ? nil : expireTime,
            refreshTokenValidTime: try milliseconds("refresh_token_valid_time"),
            profile: SellerProfile(
                userID: try text("user_id"), userNick: try text("user_nick"), account: try text("account"),
                accountPlatform: try text("account_platform"), sp: try text("sp"), locale: try text("locale")))
    }
}
