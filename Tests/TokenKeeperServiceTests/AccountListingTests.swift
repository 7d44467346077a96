import Foundation
import Testing
import TokenKeeperCore

@testable import TokenKeeperService

@Suite struct AccountListingTests {
    private func account(_ index: Int) -> Account {
        Account(
            sellerID: "seller-\(index)", profile: SellerProfile(userNick: "nick/\(index)"),
            refreshToken: Secret("RT-\(index)"), accessToken: index % 2 == 0 ? Secret("AT-\(index)") : nil,
            expireTime: Timestamp(millisecondsSince1970: 1_800_000_000_000 + Int64(index)),
            nextRefreshAt: Timestamp(millisecondsSince1970: 1_790_000_000_000), failedAttempts: index % 3,
            lastError: index % 3 == 0 ? nil : "Transient: \"quoted\"", updatedAt: Timestamp(millisecondsSince1970: 1))
    }

    /// Written page by page, the JSON is byte for byte what JSONEncoder
    /// makes of the whole array, and names no token.
    @Test func streamedJSONIsTheWholeArrayAsJSONEncoderWritesIt() throws {
        let accounts = (0..<7).map(account)
        var stream = AccountListing.JSONStream()
        let streamed =
            stream.chunk(for: Array(accounts[0..<3])) + stream.chunk(for: Array(accounts[3...])) + stream.end()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let whole = String(decoding: try encoder.encode(accounts.map(AccountListing.Entry.init)), as: UTF8.self)
        #expect(streamed == whole)
        #expect(!streamed.contains("RT-") && !streamed.contains("AT-"))
        var empty = AccountListing.JSONStream()
        #expect(empty.chunk(for: []) + empty.end() == "[]")
    }

    @Test func tableColumnsFitEveryPageAndTheFooterCountsAll() {
        var table = AccountListing.Table(now: Timestamp(millisecondsSince1970: 1_795_000_000_000))
        let first = [account(1), account(2)]
        var long = account(3)
        long.sellerID = "a-much-longer-seller-id"
        table.measure(first)
        table.measure([long])
        let lines = (table.header() + "\n" + table.rows(first) + table.rows([long])).split(separator: "\n")
        // Every line's second column starts at the same place.
        let statusColumn = lines.map { line in
            let start = line.range(of: "STATUS")?.lowerBound ?? line.range(of: "active")?.lowerBound ?? line.startIndex
            return line.distance(from: line.startIndex, to: start)
        }
        #expect(Set(statusColumn).count == 1)
        #expect(table.footer() == "3 accounts: 3 active (2 without a valid access token), 0 need re-authorization")
    }
}
