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

    /// Stores the seller of an authorization-code grant: a new account, or
    /// new tokens for an existing one, which becomes `active` with its
    /// failures and status reason cleared (a `reactivated` event when it was
    /// `reauth_required`). Returns the account as stored.
    func enroll(grant: TokenGrant, nextRefreshAt: Timestamp, now: Timestamp) async throws -> Account

    /// Imports sellers from another tool. A seller already managed (active or
    /// disabled) is skipped unless `replace`; invalid records are refused by
    /// index and the rest stored.
    func importAccounts(_ records: [ImportRecord], replace: Bool, batchSize: Int?, now: Timestamp) async throws
        -> ImportSummary

    /// One account as stored, or nil.
    func account(sellerID: String) async throws -> Account?

    /// At most `limit` accounts after `sellerID` (from the first when nil), by
    /// seller id compared bytewise: a page, so that a million are read with
    /// bounded memory.
    func accounts(after sellerID: String?, limit: Int) async throws -> [Account]

    /// Disables (`.disabled`) or enables (`.active`) an account; never sets
    /// `reauth_required` (only ``AccountStore/markReauthRequired(sellerID:sent:reason:requestID:now:)`` does).
    func setStatus(sellerID: String, to status: AccountStatus, nextRefreshAt: Timestamp?, now: Timestamp) async throws
        -> Account

    /// Removes an account; the change feed reports it with no deadline. Its
    /// events stay.
    func remove(sellerID: String, now: Timestamp) async throws

    /// How many accounts have each status.
    func countByStatus() async throws -> [AccountStatus: Int]

    /// Events matching `query`, newest first.
    func events(_ query: EventQuery) async throws -> [StoredEvent]
}

extension ManagedAccountStore {
    /// Every account, by seller id, read a page at a time.
    public func allAccounts() async throws -> [Account] {
        var all: [Account] = []
        while true {
            let page = try await accounts(after: all.last?.sellerID, limit: 10_000)
            all += page
            if page.count < 10_000 { return all }
        }
    }
}
