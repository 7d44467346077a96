import PostgresNIO
public import TokenKeeperCore

/// What went wrong in the PostgreSQL store, in words that never carry a
/// token: PostgreSQL's own message and SQLSTATE, never its detail (which can
/// quote a row) nor the query's values.
public enum PostgresStoreError: Error, Sendable, CustomStringConvertible, ScopedStoreError {
    /// The schema was written by a newer tokenkeeper.
    case schemaTooNew(found: Int, supported: Int)
    /// The server refused or failed one statement.
    case server(sqlState: String, message: String)
    /// The server could not be reached or the connection broke.
    case connection(String)
    /// No such account.
    case unknownSeller(AccountKey)
    /// A record or account that cannot be stored.
    case invalidAccount(AccountKey, problem: String)
    /// `migrate --to postgres` found sellers already in the schema, or a
    /// copy that does not match.
    case notEmpty(accounts: Int)
    case verificationFailed(String)

    public var description: String {
        switch self {
        case .schemaTooNew(let found, let supported):
            "the PostgreSQL schema is at version \(found), newer than this tokenkeeper knows (\(supported)): "
                + "run the tokenkeeper that wrote it, or a newer one; nothing was changed"
        case .server(let sqlState, let message): "PostgreSQL refused: \(message) (SQLSTATE \(sqlState))"
        case .connection(let what): "cannot reach PostgreSQL: \(what)"
        case .unknownSeller(let account): "no seller \(account)"
        case .invalidAccount(let account, let problem): "seller \(account): \(problem)"
        case .notEmpty(let accounts):
            "the PostgreSQL schema already holds \(accounts) sellers: migrate into an empty schema "
                + "(storage.postgres.schema) so that nothing there is overwritten"
        case .verificationFailed(let what): "the copy does not match keeper.db: \(what)"
        }
    }

    /// Constraint and data errors belong to one account's write; the rest
    /// (connection, server down, permissions) to the store.
    public var scope: StoreFailureScope {
        switch self {
        case .server(let sqlState, _) where sqlState.hasPrefix("22") || sqlState.hasPrefix("23"): .account
        case .invalidAccount, .unknownSeller: .account
        // serialization_failure, deadlock_detected, lock_not_available.
        case .server(let sqlState, _) where ["40001", "40P01", "55P03"].contains(sqlState): .contention
        default: .store
        }
    }

    /// Any error postgres-nio throws, in these terms.
    static func from(_ error: any Error) -> any Error {
        if error is CancellationError { return error }
        if let error = error as? PostgresStoreError { return error }
        if let error = error as? PostgresTransactionError {
            if let inner = error.closureError ?? error.beginError ?? error.commitError { return from(inner) }
        }
        if let error = error as? PSQLError {
            if error.code == .server, let info = error.serverInfo {
                return PostgresStoreError.server(
                    sqlState: info[.sqlState] ?? "?????", message: info[.message] ?? "unknown error")
            }
            return PostgresStoreError.connection("\(error.code)")
        }
        return PostgresStoreError.connection(String(describing: type(of: error)))
    }
}
