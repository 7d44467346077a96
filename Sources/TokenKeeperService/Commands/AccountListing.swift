import Foundation
import TokenKeeperCore

/// How `list` shows accounts.
enum AccountListing {
    struct Entry: Encodable {
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
    }

    static func json(_ accounts: [Account]) -> String {
        let entries = accounts.map { account in
            Entry(
                seller_id: account.sellerID, user_nick: account.profile.userNick, status: account.status.rawValue,
                status_reason: account.statusReason, has_access_token: account.accessToken != nil,
                expire_time: account.expireTime?.millisecondsSince1970,
                reauth_by: account.refreshTokenValidTime?.millisecondsSince1970,
                next_refresh_at: account.status == .active ? account.nextRefreshAt?.millisecondsSince1970 : nil,
                refreshed_at: account.refreshedAt?.millisecondsSince1970, failed_attempts: account.failedAttempts,
                last_error: account.lastError, last_request_id: account.lastRequestID,
                updated_at: account.updatedAt.millisecondsSince1970)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data = (try? encoder.encode(entries)) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func table(_ accounts: [Account], now: Timestamp) -> String {
        guard !accounts.isEmpty else {
            return "no accounts; enroll one with 'tokenkeeper add --code CODE' or 'tokenkeeper import'"
        }
        let header = ["SELLER", "STATUS", "REASON", "ACCESS EXPIRES", "REAUTH BY", "NEXT REFRESH", "LAST ERROR"]
        let rows = accounts.map { account -> [String] in
            [
                account.sellerID, account.status.rawValue, account.statusReason ?? "-",
                account.accessToken == nil ? "(no token)" : (account.expireTime.map(\.description) ?? "-"),
                account.refreshTokenValidTime.map(\.description) ?? "-",
                account.status == .active ? (account.nextRefreshAt.map(\.description) ?? "now") : "-",
                account.lastError.map { $0.count > 60 ? String($0.prefix(57)) + "..." : $0 } ?? "-",
            ]
        }
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        let active = accounts.filter { $0.status == .active }.count
        let reauth = accounts.filter { $0.status == .reauthRequired }.count
        let expired = accounts.filter { $0.status == .active && !$0.hasUsableAccessToken(at: now) }.count
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
            + "\n\(accounts.count) accounts: \(active) active (\(expired) without a valid access token), "
            + "\(reauth) need re-authorization"
    }
}
