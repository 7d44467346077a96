import Foundation
import TokenKeeperCore

/// `list`'s two forms, written a page at a time. Never a token.
enum AccountListing {
    // The names are `list --json`'s keys, as the readers' files spell them.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    struct Entry: Encodable {
        var app: String
        var seller_id: String
        var user_nick: String?
        var status: String
        var status_reason: String?
        var has_access_token: Bool
        var expire_time: Int64?
        var reauth_by: Int64?
        var next_refresh_at: Int64?
        var refreshed_at: Int64?
        var failed_attempts: Int
        var last_error: String?
        var last_request_id: String?
        var updated_at: Int64

        init(_ account: Account) {
            app = account.app.rawValue
            seller_id = account.sellerID
            user_nick = account.profile.userNick
            status = account.status.rawValue
            status_reason = account.statusReason
            has_access_token = account.accessToken != nil
            expire_time = account.expireTime?.millisecondsSince1970
            reauth_by = account.refreshTokenValidTime?.millisecondsSince1970
            next_refresh_at = account.status == .active ? account.nextRefreshAt?.millisecondsSince1970 : nil
            refreshed_at = account.refreshedAt?.millisecondsSince1970
            failed_attempts = account.failedAttempts
            last_error = account.lastError
            last_request_id = account.lastRequestID
            updated_at = account.updatedAt.millisecondsSince1970
        }
    }

    /// The whole table for accounts in hand (the demo's few).
    static func table(_ accounts: [Account], now: Timestamp) -> String {
        var table = Table(now: now)
        table.measure(accounts)
        guard table.count > 0 else { return emptyTable }
        return table.header() + "\n" + table.rows(accounts) + table.footer()
    }

    static let emptyTable = "no accounts; enroll one with 'tokenkeeper add --code CODE' or 'tokenkeeper import'"

    /// One JSON array, an object per account, as JSONEncoder would print the
    /// whole array (pretty, sorted keys), written as the pages come.
    struct JSONStream {
        private let encoder: JSONEncoder
        private var written = 0

        init() {
            encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        }

        mutating func chunk(for accounts: [Account]) -> String {
            var text = written == 0 && !accounts.isEmpty ? "[\n" : ""
            for account in accounts {
                let object = (try? encoder.encode(Entry(account))).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                if written > 0 { text += ",\n" }
                text += object.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }
                    .joined(separator: "\n")
                written += 1
            }
            return text
        }

        func end() -> String {
            written == 0 ? "[]" : "\n]"
        }
    }

    /// The table: a first pass measures the columns and counts, a second
    /// writes the rows.
    struct Table {
        static let titles = [
            "APP", "SELLER", "STATUS", "REASON", "ACCESS EXPIRES", "REAUTH BY", "NEXT REFRESH", "LAST ERROR",
        ]
        let now: Timestamp
        private var widths = Table.titles.map(\.count)
        private(set) var count = 0
        private var active = 0
        private var reauth = 0
        private var expired = 0

        init(now: Timestamp) {
            self.now = now
        }

        private static func cells(_ account: Account) -> [String] {
            [
                account.app.rawValue, account.sellerID, account.status.rawValue, account.statusReason ?? "-",
                account.accessToken == nil ? "(no token)" : (account.expireTime.map(\.description) ?? "-"),
                account.refreshTokenValidTime.map(\.description) ?? "-",
                account.status == .active ? (account.nextRefreshAt.map(\.description) ?? "now") : "-",
                account.lastError.map { $0.count > 60 ? String($0.prefix(57)) + "..." : $0 } ?? "-",
            ]
        }

        mutating func measure(_ accounts: [Account]) {
            for account in accounts {
                for (index, cell) in Self.cells(account).enumerated() { widths[index] = max(widths[index], cell.count) }
                count += 1
                if account.status == .active {
                    active += 1
                    if !account.hasUsableAccessToken(at: now) { expired += 1 }
                } else if account.status == .reauthRequired {
                    reauth += 1
                }
            }
        }

        private func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                // Never cut: a cell grown since the measuring pass only shifts its line.
                index == cells.count - 1
                    ? cell : cell + String(repeating: " ", count: max(0, widths[index] - cell.count))
            }.joined(separator: "  ")
        }

        func header() -> String {
            line(Self.titles)
        }

        func rows(_ accounts: [Account]) -> String {
            accounts.map { line(Self.cells($0)) + "\n" }.joined()
        }

        func footer() -> String {
            "\(count) accounts: \(active) active (\(expired) without a valid access token), \(reauth) need re-authorization"
        }
    }
}
