import Foundation
public import TokenKeeperCore

/// Why an import line was refused. Never quotes a token.
public struct ImportLineError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var problem: String

    public var description: String { "line \(line): \(problem)" }
}

/// Which apps an import stores sellers under: a line's `app`, checked
/// against the configuration's apps, or the app of a line that names none.
public struct ImportApps: Sendable, Equatable {
    /// The app of a line without `app` (`--app`, or the configuration's only
    /// app); nil: such a line is refused.
    public var fallback: AppName?
    /// The configuration's apps; nil: any (a salvaged pair names its own).
    public var known: Set<AppName>?

    public init(fallback: AppName?, known: Set<AppName>?) {
        self.fallback = fallback
        self.known = known
    }

    /// Any app; a line without one is the default app's.
    public static let any = ImportApps(fallback: .default, known: nil)
}

/// Parses import lines: one JSON object per line with the gateway's field names
/// (`seller_id` or `user_id`, `refresh_token`, optionally `access_token`,
/// `expire_time`, `refresh_token_valid_time`, `user_nick`, `account`, …), so a
/// saved `/auth/token/create` answer imports as it is.
public enum ImportLineParser {
    /// Epoch milliseconds before 2001-09-09 are almost surely seconds by mistake.
    static let earliestPlausibleMilliseconds: Int64 = 1_000_000_000_000
    /// Ten years: a longer `expires_in` is a mistake.
    static let maximumLifetimeSeconds: Int64 = 10 * 366 * 86_400

    /// Parses one line. Blank lines and lines starting with `#` give nil.
    public static func parse(_ line: Substring, number: Int, apps: ImportApps = .any) throws(ImportLineError)
        -> ImportRecord?
    {
        let trimmed = mayNeedTrimming(line) ? Substring(line.trimmingCharacters(in: .whitespacesAndNewlines)) : line
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return nil }
        func refuse(_ problem: String) -> ImportLineError { ImportLineError(line: number, problem: problem) }
        let object: [String: ImportFieldValue]
        if let fast = FlatJSONObject.parse(trimmed) {
            object = fast
        } else {
            object = try serializedObject(String(trimmed), refuse: refuse)
        }
        func text(_ key: String) throws(ImportLineError) -> String? {
            switch object[key] {
            case nil, .null: return nil
            case .string(let value): return value.isEmpty ? nil : value
            case .number(let text, _): return text
            case .other: throw refuse("\(key) must be a string")
            }
        }
        /// The field as a whole number: nil when absent, `.some(nil)` when
        /// present but not a whole number.
        func wholeNumber(_ key: String) -> Int64?? {
            switch object[key] {
            case nil, .null: return nil
            case .number(_, let whole): return .some(whole)
            case .string(let string): return .some(string.isEmpty ? nil : Int64(string))
            case .other: return .some(nil)
            }
        }
        func milliseconds(_ key: String) throws(ImportLineError) -> Timestamp? {
            guard let present = wholeNumber(key) else { return nil }
            guard let value = present else { throw refuse("\(key) must be epoch milliseconds (a whole number)") }
            guard value >= earliestPlausibleMilliseconds else {
                throw refuse("\(key) \(value) looks like seconds; it must be epoch milliseconds")
            }
            return Timestamp(millisecondsSince1970: value)
        }
        // A saved answer's expires_in: the token's whole life, in seconds.
        func lifetime(_ key: String) throws(ImportLineError) -> Duration? {
            guard let present = wholeNumber(key) else { return nil }
            guard let value = present, value > 0, value <= maximumLifetimeSeconds else {
                throw refuse(
                    "\(key) must be the access token's lifetime in whole seconds (1 to \(maximumLifetimeSeconds))")
            }
            return .seconds(value)
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
        let app: AppName
        if let appText = try text("app") {
            guard let named = AppName(rawValue: appText) else {
                throw refuse("app '\(appText)': \(AppName.problem(with: appText) ?? "not an app name")")
            }
            if let known = apps.known, !known.contains(named) {
                throw refuse(
                    "app \(named) is not in the configuration (apps: \(known.map(\.rawValue).sorted().joined(separator: ", ")))"
                )
            }
            app = named
        } else if let fallback = apps.fallback {
            app = fallback
        } else {
            throw refuse("no app: the configuration has several; give the line an \"app\" or run import --app NAME")
        }
        return ImportRecord(
            app: app, sellerID: sellerID, refreshToken: Secret(refreshToken), accessToken: accessToken.map(Secret.init),
            expireTime: accessToken == nil ? nil : expireTime,
            accessTokenLifetime: accessToken == nil ? nil : try lifetime("expires_in"),
            refreshTokenValidTime: try milliseconds("refresh_token_valid_time"),
            profile: SellerProfile(
                userID: try text("user_id"), userNick: try text("user_nick"), account: try text("account"),
                accountPlatform: try text("account_platform"), sp: try text("sp"), locale: try text("locale")))
    }

    /// False when the line starts and ends with printable ASCII: then
    /// Foundation's trimming (a good part of a line's cost) has nothing to do.
    private static func mayNeedTrimming(_ line: Substring) -> Bool {
        guard let first = line.utf8.first, let last = line.utf8.last else { return false }
        return !(0x21..<0x7F).contains(first) || !(0x21..<0x7F).contains(last)
    }

    /// The line read by `JSONSerialization`: what the fast reader leaves
    /// (floats, booleans, nested values, odd escapes) and every refusal.
    static func serializedObject(
        _ line: String, refuse: (String) -> ImportLineError
    ) throws(ImportLineError) -> [String: ImportFieldValue] {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(line.utf8))
        } catch {
            throw refuse("not valid JSON")
        }
        guard let object = parsed as? [String: Any] else { throw refuse("not a JSON object") }
        return object.mapValues { value in
            switch value {
            case is NSNull: .null
            case let string as String: .string(string)
            case let number as NSNumber:
                .number(text: number.stringValue, wholeValue: Int64(exactly: number.doubleValue))
            default: .other
            }
        }
    }
}
