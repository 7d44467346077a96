import Logging
import TokenKeeperCore

/// tokens.db, the readers' copy: each row is a pure function of the seller's
/// keeper.db row (``readerRowSQL(from:)``), so it can always be rebuilt.
///
/// Ordering: keeper.db commits first. Then, inside a `BEGIN IMMEDIATE`
/// transaction on tokens.db, the row is read again from keeper.db and written.
/// Reading under tokens.db's write lock makes concurrent writers (the daemon
/// and a CLI process) safe: whoever writes tokens.db last read keeper.db last.
///
/// If the tokens.db write fails after keeper.db committed, keeper.db stands
/// (the caller is not told the write failed: it did not), the failure is
/// logged as critical, and the whole of tokens.db is compared and repaired on
/// the following writes (at most every ``AccountVault/repairRetryInterval``)
/// and at the next open.
extension AccountVault {
    /// The readers' columns, in `tokens` column order.
    static let readerColumns = """
        seller_id, user_id, user_nick, account, account_platform, sp, locale, access_token, expire_time, \
        reauth_by, status, status_reason, refreshed_at, updated_at, app, country
        """

    /// The tokens.db rows that keeper.db's `accounts` (in schema `schema`)
    /// calls for: sellers with an access token. `reauth_by` is the refresh
    /// token's validity, or the access token's expiry once the gateway has
    /// said it will not refresh again. Never selects the refresh token.
    static func readerRowSQL(from schema: String) -> String {
        """
        SELECT seller_id, user_id, user_nick, account, account_platform, sp, locale, access_token, expire_time,
            CASE WHEN refreshable = 0
                THEN min(coalesce(refresh_token_valid_time, expire_time), expire_time)
                ELSE refresh_token_valid_time END,
            status, status_reason, coalesce(refreshed_at, updated_at), updated_at, app, country
        FROM \(schema).accounts
        WHERE access_token IS NOT NULL AND expire_time IS NOT NULL
        """
    }

    static let upsertReaderRowSQL = """
        INSERT INTO tokens (\(readerColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        \(readerRowConflictSQL)
        """

    static let readerRowConflictSQL = """
        ON CONFLICT (app, seller_id) DO UPDATE SET
            user_id = excluded.user_id, user_nick = excluded.user_nick, account = excluded.account,
            account_platform = excluded.account_platform, sp = excluded.sp, locale = excluded.locale,
            access_token = excluded.access_token, expire_time = excluded.expire_time,
            reauth_by = excluded.reauth_by, status = excluded.status, status_reason = excluded.status_reason,
            refreshed_at = excluded.refreshed_at, updated_at = excluded.updated_at, country = excluded.country
        """

    /// After a keeper.db commit: rewrites the sellers' readers' rows; never
    /// throws (keeper.db is already committed and is the truth). After an
    /// earlier failure, the next write that succeeds also repairs the whole
    /// file; a repair that fails is retried no sooner than
    /// ``AccountVault/repairRetryInterval``.
    func updateReaders(_ keys: [AccountKey]) {
        updateReaders(keys.count) { try copyToReaders(keys) }
    }

    private func updateReaders(_ count: Int, _ copy: () throws -> Void) {
        readersCopied(count, Result { try copy() })
    }

    /// What ``updateReaders(_:)`` does once the copy of `count` sellers'
    /// rows ended with `outcome` (made here, or on an import's second thread).
    func readersCopied(_ count: Int, _ outcome: Result<Void, any Error>) {
        let repairPending = readersNeedRepair
        do {
            try outcome.get()
            keepLogSmallWhileLowOnSpace(tokens)
        } catch {
            readersNeedRepair = true
            logger.critical(
                "tokens.db could not be updated after keeper.db committed; readers see old rows until it is repaired",
                metadata: ["sellers": "\(count)", "path": "\(tokensPath)", "error": "\(error)"])
            return
        }
        guard repairPending else { return }
        if let next = nextRepairAttempt, ContinuousClock.now < next { return }
        do {
            let repaired = try repairReaders()
            logger.notice("tokens.db repaired from keeper.db", metadata: ["rows": "\(repaired)"])
        } catch {
            nextRepairAttempt = ContinuousClock.now + Self.repairRetryInterval
            logger.critical(
                "tokens.db repair failed; retrying on later writes",
                metadata: ["path": "\(tokensPath)", "error": "\(error)"])
        }
    }

    /// Copies the rows of every seller that the keeper.db transaction with
    /// `changeSequence` wrote, from keeper.db as it is now, in one tokens.db
    /// transaction: keeper.db attached read-only, read under tokens.db's
    /// write lock as ``copyToReaders(_:)`` reads it.
    func copyToReaders(writtenWith changeSequence: Int64) throws {
        try tokens.execute("ATTACH DATABASE ? AS keeper", [Self.readOnlyURI(keeperPath)])
        defer { _ = try? tokens.execute("DETACH DATABASE keeper") }
        try tokens.transaction(.immediate) {
            try tokens.execute(
                """
                INSERT INTO main.tokens (\(Self.readerColumns))
                \(Self.readerRowSQL(from: "keeper")) AND change_seq = ?
                \(Self.readerRowConflictSQL)
                """, [changeSequence])
            try tokens.execute(
                """
                DELETE FROM main.tokens WHERE (app, seller_id) IN (
                    SELECT app, seller_id FROM keeper.accounts
                    WHERE change_seq = ? AND (access_token IS NULL OR expire_time IS NULL))
                """, [changeSequence])
            try tokens.execute(
                """
                DELETE FROM main.ventures WHERE (app, account_id) IN (
                    SELECT app, seller_id FROM keeper.accounts WHERE change_seq = ?)
                """, [changeSequence])
            try tokens.execute(
                """
                INSERT INTO main.ventures (app, account_id, country, seller_id, user_id, short_code)
                SELECT v.app, v.account_id, v.country, v.seller_id, v.user_id, v.short_code
                FROM keeper.ventures AS v JOIN keeper.accounts AS a ON a.app = v.app AND a.seller_id = v.account_id
                WHERE a.change_seq = ?
                """, [changeSequence])
        }
    }

    /// Copies the sellers' rows from keeper.db as it is now (deleting those
    /// that have no access token or no account) in one tokens.db transaction.
    func copyToReaders(_ keys: [AccountKey]) throws {
        try tokens.transaction(.immediate) {
            let read = try keeper.cachedStatement(Self.readerRowSQL(from: "main") + " AND app = ? AND seller_id = ?")
            let upsert = try tokens.cachedStatement(Self.upsertReaderRowSQL)
            let delete = try tokens.cachedStatement("DELETE FROM tokens WHERE app = ? AND seller_id = ?")
            let readVentures = try keeper.cachedStatement(
                "SELECT country, seller_id, user_id, short_code FROM ventures WHERE app = ? AND account_id = ?")
            let deleteVentures = try tokens.cachedStatement("DELETE FROM ventures WHERE app = ? AND account_id = ?")
            let insertVenture = try tokens.cachedStatement(
                """
                INSERT INTO ventures (app, account_id, country, seller_id, user_id, short_code)
                VALUES (?, ?, ?, ?, ?, ?)
                """)
            var seen = Set<AccountKey>()
            for key in keys where seen.insert(key).inserted {
                let values = try read.firstRow(key.bound) { row in
                    (0..<row.count).map { row.value($0) as (any SQLiteBindable)? }
                }
                if let values {
                    try upsert.run(values)
                } else {
                    try delete.run(key.bound)
                }
                // A Lazada account's sellers: few rows, rewritten whole.
                let ventures = try readVentures.rows(key.bound) { row in
                    (0..<row.count).map { row.value($0) as (any SQLiteBindable)? }
                }
                try deleteVentures.run(key.bound)
                for venture in ventures { try insertVenture.run(key.bound + venture) }
            }
        }
    }

    /// Compares every tokens.db row with keeper.db and rewrites those that
    /// differ (missing, extra, other values). Returns how many.
    ///
    /// The comparison runs in SQL with keeper.db attached read-only to the
    /// tokens.db connection: one pass with a primary-key lookup per row, no
    /// write and no write lock when nothing differs.
    @discardableResult
    func repairReaders() throws -> Int {
        let differing = try sellersDifferingInReaders()
        if !differing.isEmpty {
            try copyToReaders(differing)
            try keeper.transaction(.immediate) {
                try insertEvent(
                    .readersRepaired, app: nil, sellerID: nil,
                    detail: "rewrote \(differing.count) tokens.db rows from keeper.db", at: clock.now())
            }
        }
        readersNeedRepair = false
        nextRepairAttempt = nil
        return differing.count
    }

    /// The accounts whose tokens.db rows (their `tokens` row and their
    /// ventures) differ from what keeper.db calls for, among those after
    /// `lower` up to `upper` (nil: no bound), in (app, seller id) order.
    func sellersDifferingInReaders(after lower: AccountKey? = nil, upTo upper: AccountKey? = nil) throws
        -> [AccountKey]
    {
        let matches = Self.readerColumnNames.map { "t.\($0) IS w.\($0)" }.joined(separator: " AND ")
        // Plain range conditions on the primary key's row value, so that both
        // sides seek it (an `?3 IS NULL OR` would turn the tokens side into a
        // full scan).
        let range =
            upper == nil
            ? "(app, seller_id) > (?1, ?2)" : "(app, seller_id) > (?1, ?2) AND (app, seller_id) <= (?3, ?4)"
        let tokensRange =
            upper == nil
            ? "(t.app, t.seller_id) > (?1, ?2)"
            : "(t.app, t.seller_id) > (?1, ?2) AND (t.app, t.seller_id) <= (?3, ?4)"
        let ventureRange =
            upper == nil
            ? "(app, account_id) > (?1, ?2)" : "(app, account_id) > (?1, ?2) AND (app, account_id) <= (?3, ?4)"
        let ventureColumns = "app, account_id, country, seller_id, user_id, short_code"
        let sql = """
            WITH wanted (\(Self.readerColumns)) AS (\(Self.readerRowSQL(from: "keeper")) AND \(range))
            SELECT w.app, w.seller_id FROM wanted AS w
            WHERE NOT EXISTS (
                SELECT 1 FROM main.tokens AS t WHERE t.app = w.app AND t.seller_id = w.seller_id AND \(matches))
            UNION
            SELECT t.app, t.seller_id FROM main.tokens AS t
            WHERE \(tokensRange) AND NOT EXISTS (
                SELECT 1 FROM keeper.accounts AS a
                WHERE a.app = t.app AND a.seller_id = t.seller_id
                    AND a.access_token IS NOT NULL AND a.expire_time IS NOT NULL)
            UNION
            SELECT app, account_id FROM (
                SELECT \(ventureColumns) FROM keeper.ventures WHERE \(ventureRange)
                EXCEPT SELECT \(ventureColumns) FROM main.ventures WHERE \(ventureRange))
            UNION
            SELECT app, account_id FROM (
                SELECT \(ventureColumns) FROM main.ventures WHERE \(ventureRange)
                EXCEPT SELECT \(ventureColumns) FROM keeper.ventures WHERE \(ventureRange))
            """
        try tokens.execute("ATTACH DATABASE ? AS keeper", [Self.readOnlyURI(keeperPath)])
        defer {
            do {
                try tokens.execute("DETACH DATABASE keeper")
            } catch {
                logger.error("cannot detach keeper.db from the tokens.db connection", metadata: ["error": "\(error)"])
            }
        }
        let statement = try tokens.prepare(sql)
        defer { statement.finalize() }
        var bounds: [(any SQLiteBindable)?] = [lower?.app.rawValue ?? "", lower?.sellerID ?? ""]
        if let upper { bounds += upper.bound }
        return try statement.rows(bounds) { try Self.key($0, 0) }
    }

    /// Compares one stretch of sellers, the `limit` after `lower` (the last
    /// stretch reaches to the end, tokens.db rows beyond keeper.db's last
    /// seller included), and rewrites the rows that differ.
    ///
    /// - Returns: Where the next stretch starts (nil: the check is done) and
    ///   how many rows were rewritten.
    func checkReaders(after lower: AccountKey?, limit: Int) throws -> (next: AccountKey?, repaired: Int) {
        try ensureOpen()
        let upper = try keeper.cachedStatement(
            """
            SELECT app, seller_id FROM accounts WHERE (app, seller_id) > (?, ?)
            ORDER BY app, seller_id LIMIT 1 OFFSET ?
            """
        ).firstRow([lower?.app.rawValue ?? "", lower?.sellerID ?? "", max(1, limit) - 1]) { try Self.key($0, 0) }
        let differing = try sellersDifferingInReaders(after: lower, upTo: upper)
        if !differing.isEmpty { try copyToReaders(differing) }
        return (upper, differing.count)
    }

    static var readerColumnNames: [String] {
        readerColumns.split(separator: ",").map { $0.trimmingCharacters() }
    }

    /// `file:` URI for `path` with `mode=ro`: reserved characters in the
    /// path are percent-encoded so that `?` or `#` in a directory name cannot
    /// change the URI's meaning.
    static func readOnlyURI(_ path: String) -> String {
        var encoded = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "/"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                encoded += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return "file:" + encoded + "?mode=ro"
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
