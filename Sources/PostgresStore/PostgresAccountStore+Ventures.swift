import Foundation
import TokenKeeperCore

/// The sellers a Lazada account serves, one per country (the schema's
/// `ventures`, which the readers' `seller_tokens` reads): replaced whenever
/// an answer (or an imported record) lists them, kept when one does not.
extension PostgresAccountStore {
    /// One row of `ventures` as JSON, for `jsonb_to_recordset`.
    // The names are the table's columns, which jsonb_to_recordset matches.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    struct VentureRecord: Encodable {
        var app: String
        var account_id: String
        var country: String
        var seller_id: String
        var user_id: String?
        var short_code: String?
    }

    static let ventureColumns = """
        app text, account_id text, country text, seller_id text, user_id text, short_code text
        """

    /// The rows for `ventures` listed for `account`: one per country, the
    /// first listed winning (a row cannot be written twice in one statement).
    static func ventureRecords(_ ventures: [VentureSeller], of account: AccountKey) -> [VentureRecord] {
        var countries = Set<String>()
        return ventures.filter { countries.insert($0.country).inserted }.map { venture in
            VentureRecord(
                app: account.app.rawValue, account_id: account.sellerID, country: venture.country,
                seller_id: venture.sellerID, user_id: venture.userID, short_code: venture.shortCode)
        }
    }

    static func json(_ records: [VentureRecord]) throws -> String {
        String(decoding: try JSONEncoder().encode(records), as: UTF8.self)
    }

    /// Two CTEs for a statement whose earlier CTEs are `listed` (the rows of
    /// ``ventureColumns``) and `written` (`app`, `seller_id` of the accounts
    /// the statement wrote): each written account that `listed` names gets
    /// exactly those ventures; the others keep theirs. Nothing is written
    /// for an account the statement did not write (a fence that refused it).
    /// The rows deleted and those upserted are never the same, so one
    /// statement may do both.
    func venturesReplacement(written: String) -> String {
        """
        dropped_ventures AS (
            DELETE FROM \(s).ventures v USING \(written) w
            WHERE v.app = w.app AND v.account_id = w.seller_id
              AND EXISTS (SELECT 1 FROM listed l WHERE l.app = w.app AND l.account_id = w.seller_id)
              AND NOT EXISTS (
                SELECT 1 FROM listed l
                WHERE l.app = v.app AND l.account_id = v.account_id AND l.country = v.country)),
        stored_ventures AS (
            INSERT INTO \(s).ventures (app, account_id, country, seller_id, user_id, short_code)
            SELECT l.app, l.account_id, l.country, l.seller_id, l.user_id, l.short_code
            FROM listed l JOIN \(written) w ON w.app = l.app AND w.seller_id = l.account_id
            ON CONFLICT (app, account_id, country) DO UPDATE SET
                seller_id = excluded.seller_id, user_id = excluded.user_id, short_code = excluded.short_code)
        """
    }
}
