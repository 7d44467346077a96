import Foundation
import IOPGateway
import Logging
import RefreshScheduler
import SQLiteStore
import TokenKeeperCore

extension Commands {
    /// Accounts read per page by `list`.
    static let listPageSize = 1000

    /// `tokenkeeper list [--json]`: every account, never a token. Streamed
    /// page by page, so a million accounts list in bounded memory; the table
    /// takes a first pass for its column widths and totals.
    public static func list(json: Bool, app appText: String? = nil, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try AccountResolution.appName(appText)
            let now = SystemWallClock().now()
            guard context.configuredStoreExists else {
                Console.out(json ? "[]" : AccountListing.emptyTable)
                return .success
            }
            try await context.withAnyStore(checkReaders: false) { store throws(CommandFailure) in
                try await storeCall("listing accounts") {
                    if json {
                        var listing = AccountListing.JSONStream()
                        try await forEachPage(of: store, app: app) { Console.outRaw(listing.chunk(for: $0)) }
                        Console.out(listing.end())
                    } else {
                        var table = AccountListing.Table(now: now)
                        try await forEachPage(of: store, app: app) { table.measure($0) }
                        guard table.count > 0 else {
                            Console.out(AccountListing.emptyTable)
                            return
                        }
                        Console.out(table.header())
                        try await forEachPage(of: store, app: app) { Console.outRaw(table.rows($0)) }
                        Console.out(table.footer())
                    }
                }
            }
            return .success
        }
    }

    private static func forEachPage(
        of store: any ManagedAccountStore, app: AppName?, _ body: ([Account]) throws -> Void
    ) async throws {
        var last: AccountKey?
        while true {
            let page = try await store.accounts(app: app, after: last, limit: listPageSize)
            guard let final = page.last else { return }
            try body(page)
            last = final.key
        }
    }
}
