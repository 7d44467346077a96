/// The store as the commands and the operator see it, on every backend: the
/// scheduling contract (``AccountStore``) plus enrolling, importing, reading,
/// enabling, disabling and removing sellers, and the event log.
///
/// Each operation means the same on every backend; the conformance suite
/// (`Tests/StoreConformanceTests`) runs the same tests against each.
public protocol ManagedAccountStore: AccountStore {
    /// Fails unless the store can be written now (before spending something
    /// single-use, such as an authorization code).
    func checkWritable() async throws

    /// Stores the seller of an authorization-code grant for `app`: a new account, or
    /// new tokens for an existing one, which becomes `active` with its
    /// failures and status reason cleared (a `reactivated` event when it was
    /// `reauth_required`). Returns the account as stored.
    func enroll(app: AppName, grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) async throws -> Account

    /// Imports sellers from another tool. A seller already managed (active or
    /// disabled) is skipped unless `replace`; invalid records are refused by
    /// index and the rest stored.
    func importAccounts(_ records: [ImportRecord], replace: Bool, batchSize: Int?, now: Timestamp) async throws
        -> ImportSummary

    /// One account as stored, or nil.
    func account(_ key: AccountKey) async throws -> Account?

    /// The keys of every account with this seller id, one per app that has
    /// it (what a command given a seller id and no app looks up).
    func accountKeys(sellerID: String) async throws -> [AccountKey]

    /// The account of `app` that serves `sellerID`: keyed by it, or a Lazada
    /// account listing it among its sellers (one per country); nil for none.
    func accountKey(app: AppName, servingSeller sellerID: String) async throws -> AccountKey?

    /// At most `limit` accounts of `app` (of every app when nil) after `key`
    /// (from the first when nil), by app and then seller id compared
    /// bytewise: a page, so that a million are read with bounded memory.
    func accounts(app: AppName?, after key: AccountKey?, limit: Int) async throws -> [Account]

    /// Disables (`.disabled`) or enables (`.active`) an account; never sets
    /// `reauth_required` (only ``AccountStore/markReauthRequired(sellerID:sent:reason:requestID:now:)`` does).
    func setStatus(account: AccountKey, to status: AccountStatus, nextRefreshAt: Timestamp?, now: Timestamp)
        async throws
        -> Account

    /// Removes an account; the change feed reports it with no deadline. Its
    /// events stay.
    func remove(account: AccountKey, now: Timestamp) async throws

    /// How many accounts of each app have each status: every status of an
    /// app that has accounts (zero where none has it); apps without
    /// accounts are absent.
    func statusCounts() async throws -> [AppName: [AccountStatus: Int]]

    /// Events matching `query`, newest first.
    func events(_ query: EventQuery) async throws -> [StoredEvent]
}

extension ManagedAccountStore {
    /// How many accounts have each status, over every app (every status
    /// present, zero where none has it).
    public func countByStatus() async throws -> [AccountStatus: Int] {
        AccountStatus.total(of: try await statusCounts())
    }

    /// Every account (of `app`, or of all), by app and seller id, read a page at a time.
    public func allAccounts(app: AppName? = nil) async throws -> [Account] {
        var all: [Account] = []
        while true {
            let page = try await accounts(app: app, after: all.last?.key, limit: 10_000)
            all += page
            if page.count < 10_000 { return all }
        }
    }
}
