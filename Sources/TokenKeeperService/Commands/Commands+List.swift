import Foundation
import IOPGateway
import Logging
import RefreshScheduler
import SQLiteStore
import TokenKeeperCore

extension Commands {
    /// `tokenkeeper list [--json]`: every account, never a token.
    public static func list(json: Bool, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            guard context.storeExists else {
                Console.out(json ? "[]" : AccountListing.table([], now: SystemWallClock().now()))
                return .success
            }
            let accounts = try await context.withStore { store throws(CommandFailure) in
                try await storeCall("listing accounts") { try await store.allAccounts() }
            }
            if json {
                Console.out(AccountListing.json(accounts))
            } else {
                Console.out(AccountListing.table(accounts, now: SystemWallClock().now()))
            }
            return .success
        }
    }
}
