/// One seller to import (`tokenkeeper import`): a refresh token, and where the
/// previous tool had them, the access token and its times.
public struct ImportRecord: Sendable, Equatable {
    public var app: AppName
    public var sellerID: String
    public var refreshToken: Secret
    /// Without one the seller has no row in `tokens.db` until its first refresh.
    public var accessToken: Secret?
    /// Required with an access token.
    public var expireTime: Timestamp?
    /// The access token's whole lifetime (a saved answer's `expires_in`), if
    /// known: the start then caps the deadline at a fifth of it before
    /// expiry, as for a refreshed token; unknown, at five minutes before.
    public var accessTokenLifetime: Duration?
    public var refreshTokenValidTime: Timestamp?
    public var profile: SellerProfile
    /// When the scheduler should first refresh it; nil means at once.
    public var nextRefreshAt: Timestamp?

    public init(
        app: AppName = .default, sellerID: String, refreshToken: Secret, accessToken: Secret? = nil,
        expireTime: Timestamp? = nil,
        accessTokenLifetime: Duration? = nil, refreshTokenValidTime: Timestamp? = nil,
        profile: SellerProfile = SellerProfile(), nextRefreshAt: Timestamp? = nil
    ) {
        self.app = app
        self.sellerID = sellerID
        self.refreshToken = refreshToken
        self.accessToken = accessToken
        self.expireTime = expireTime
        self.accessTokenLifetime = accessTokenLifetime
        self.refreshTokenValidTime = refreshTokenValidTime
        self.profile = profile
        self.nextRefreshAt = nextRefreshAt
    }

    public var key: AccountKey { AccountKey(app: app, sellerID: sellerID) }

    /// Why the record cannot be stored, or nil. Never quotes a token.
    public var problem: String? {
        if sellerID.isEmpty { return "seller id is empty" }
        if sellerID.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            return "seller id contains control characters"
        }
        if refreshToken.isEmpty { return "refresh token is empty" }
        if let accessToken {
            if accessToken.isEmpty { return "access token is empty" }
            if expireTime == nil { return "access token given without expire time" }
        }
        return nil
    }
}

/// What ``ManagedAccountStore/importAccounts(_:replace:batchSize:now:)`` did.
public struct ImportSummary: Sendable, Equatable {
    /// Records stored (new sellers and re-imports).
    public var imported: Int
    /// Records refused, with their position in the input; nothing of them was stored.
    public var refused: [RefusedRecord]
    /// Sellers skipped because tokenkeeper already manages them (without
    /// `replace`); their stored tokens were left as they were.
    public var alreadyManaged: [AccountKey]

    public init(imported: Int = 0, refused: [RefusedRecord] = [], alreadyManaged: [AccountKey] = []) {
        self.imported = imported
        self.refused = refused
        self.alreadyManaged = alreadyManaged
    }
}

/// A record the import refused.
public struct RefusedRecord: Sendable, Equatable, CustomStringConvertible {
    /// Its position in the array given to the import (0-based).
    public var index: Int
    public var sellerID: String
    public var problem: String

    public init(index: Int, sellerID: String, problem: String) {
        self.index = index
        self.sellerID = sellerID
        self.problem = problem
    }

    public var description: String { "record \(index) (seller \(sellerID)): \(problem)" }
}
