/// The name a user gives one of their marketplace apps in the configuration
/// (`apps: { ae: …, lazada_sg: … }`): `[a-z0-9_-]`, 1 to 32 characters. A
/// configuration with a single top-level `app:` has one app, ``default``.
///
/// Names are short, so a name is stored inline in its `String` (no allocation):
/// a million keys in the scheduler cost no more than their seller ids.
public struct AppName: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    /// The app of a single-app configuration, and of every account a store
    /// made before there were several apps.
    public static let `default`: AppName = "default"

    /// Nil unless `rawValue` is a valid name (see ``problem(with:)``).
    public init?(rawValue: String) {
        guard Self.problem(with: rawValue) == nil else { return nil }
        self.rawValue = rawValue
    }

    /// For names written in the code; a literal that is not a valid name is a
    /// programming error.
    public init(stringLiteral value: String) {
        precondition(Self.problem(with: value) == nil, "invalid app name \(value)")
        rawValue = value
    }

    /// Why `name` is not a valid app name, or nil.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "an app name must not be empty" }
        if name.utf8.count > 32 { return "an app name has at most 32 characters" }
        let allowed = name.utf8.allSatisfy { byte in
            (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x5F || byte == 0x2D
        }
        return allowed ? nil : "an app name uses only a-z, 0-9, _ and -"
    }

    public var description: String { rawValue }

    public static func < (lhs: AppName, rhs: AppName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What identifies a stored account everywhere (keeper.db, tokens.db,
/// PostgreSQL, the scheduler, events): the app it belongs to and its seller
/// id. The same seller id under two apps is two accounts with their own
/// tokens. A Lazada account, which serves one seller per country, is keyed
/// by the first seller its answers list.
public struct AccountKey: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var app: AppName
    public var sellerID: String

    public init(app: AppName, sellerID: String) {
        self.app = app
        self.sellerID = sellerID
    }

    /// A seller of the ``AppName/default`` app.
    public init(stringLiteral sellerID: String) {
        self.init(app: .default, sellerID: sellerID)
    }

    /// `sellerID` for the default app (what a single-app setup always showed),
    /// `app/sellerID` otherwise.
    public var description: String { app == .default ? sellerID : "\(app.rawValue)/\(sellerID)" }

    /// By app, then seller id compared bytewise (the stores' order).
    public static func < (lhs: AccountKey, rhs: AccountKey) -> Bool {
        if lhs.app != rhs.app { return lhs.app < rhs.app }
        return lhs.sellerID.utf8.lexicographicallyPrecedes(rhs.sellerID.utf8)
    }
}
