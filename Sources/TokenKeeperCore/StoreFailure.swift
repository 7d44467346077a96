/// How far a failed store write reaches, which decides what the scheduler
/// holds back: one seller, or every call.
public enum StoreFailureScope: Sendable, Equatable {
    /// Only this account's write was refused (a constraint, a value the store
    /// cannot hold): record it on the account, retry it later, and let every
    /// other seller go on.
    case account
    /// Another process holds the store's write lock (a command's
    /// transaction: an `import` chunk, a CLI `refresh`) past the wait the
    /// store allows. Not a failure: try again soon, hold nothing back, and
    /// say so at most as a warning.
    case contention
    /// The store cannot write at all (disk full, I/O error, read-only file):
    /// no call may start, since each would rotate a token that could not be
    /// stored.
    case store
}

/// An error a store throws that knows its ``StoreFailureScope``. Any other
/// error is taken to be ``StoreFailureScope/store``: the safe assumption.
public protocol ScopedStoreError: Error {
    var scope: StoreFailureScope { get }
}

extension StoreFailureScope {
    /// The scope of any error thrown by a store.
    public static func of(_ error: any Error) -> StoreFailureScope {
        (error as? any ScopedStoreError)?.scope ?? .store
    }
}
