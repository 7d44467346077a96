/// Why the store refused or failed, in words that say what to do. Never
/// carries a token.
public enum SQLiteStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file exists but is not an SQLite database; it was not changed.
    case notADatabase(path: String, detail: String)
    /// An SQLite database, but not one of ours (another application's, or
    /// keeper.db and tokens.db swapped); it was not changed.
    case foreignDatabase(path: String, detail: String)
    /// Written by a newer tokenkeeper; it was not changed.
    case schemaTooNew(fileName: String, path: String, found: Int64, known: Int64)
    /// A file or directory could not be created, inspected or given its mode.
    case fileProblem(path: String, problem: String)
    /// No account with this seller id.
    case unknownSeller(String)
    /// The account is `reauth_required`: only a new authorization
    /// (`tokenkeeper add --code`) or a re-import brings it back.
    case needsReauthorization(sellerID: String)
    /// The values given for an account cannot be stored (empty seller id, …).
    case invalidAccount(sellerID: String, problem: String)
    /// A stored row cannot be read back (edited by hand, or damaged).
    case damagedRow(sellerID: String, problem: String)
    /// The store was closed.
    case closed
    /// A bulk import stopped at a database error; the batches before it
    /// (`imported` accounts) are stored, the rest are not.
    case importInterrupted(imported: Int, error: SQLiteError)

    public var description: String {
        switch self {
        case .notADatabase(let path, let detail):
            "\(path) is not an SQLite database (\(detail)); it was left untouched: "
                + "move it away or restore it from a backup"
        case .foreignDatabase(let path, let detail):
            "\(path) is not a tokenkeeper database (\(detail)); it was left untouched: "
                + "check storage.directory"
        case .schemaTooNew(let fileName, let path, let found, let known):
            "\(fileName) at \(path) has schema version \(found) but this tokenkeeper knows up to \(known); "
                + "upgrade tokenkeeper"
        case .fileProblem(let path, let problem):
            "\(path): \(problem)"
        case .unknownSeller(let sellerID):
            "no account for seller \(sellerID)"
        case .needsReauthorization(let sellerID):
            "seller \(sellerID) needs re-authorization: run 'tokenkeeper add --code CODE' with a new "
                + "authorization code (or import a new refresh token)"
        case .invalidAccount(let sellerID, let problem):
            "account for seller \(sellerID.isEmpty ? "(empty id)" : sellerID) cannot be stored: \(problem)"
        case .damagedRow(let sellerID, let problem):
            "stored account for seller \(sellerID) cannot be read: \(problem)"
        case .closed:
            "the account store is closed"
        case .importInterrupted(let imported, let error):
            "import stopped after \(imported) accounts were stored: \(error)"
        }
    }
}
