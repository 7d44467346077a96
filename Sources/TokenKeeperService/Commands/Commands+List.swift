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

    /// `tokenkeeper refresh SELLER… | --all-due`: refreshes now, beside a
    /// running daemon (the same lease keeps one refresh per seller at a time).
    public static func refresh(sellerIDs: [String], allDue: Bool, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let logger = Logger(label: "tokenkeeper.refresh")
            let client = try context.gatewayClient(logger: logger)
            let outcomes: [String: RefreshOutcome]
            do throws(CommandFailure) {
                outcomes = try await context.withStore { store throws(CommandFailure) in
                    var targets = sellerIDs
                    if allDue {
                        let now = SystemWallClock().now()
                        let accounts = try await storeCall("listing accounts") { try await store.allAccounts() }
                        targets += accounts.filter { account in
                            account.status == .active
                                && (account.nextRefreshAt.map { $0 <= now } ?? true || account.accessToken == nil)
                        }.map(\.sellerID)
                    }
                    guard !targets.isEmpty else { return [:] }
                    let scheduler = RefreshScheduler(
                        store: store, gateway: client,
                        configuration: context.configuration.schedulerConfiguration(
                            leaseOwner: "cli-\(ProcessInfo.processInfo.processIdentifier)"),
                        logger: logger)
                    return await scheduler.refreshNow(targets)
                }
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
            if outcomes.isEmpty {
                Console.out(allDue ? "no account is due" : "nothing to refresh")
                return .success
            }
            var worst = CommandOutcome.success
            for sellerID in outcomes.keys.sorted() {
                let (line, outcome) = RefreshReport.describe(outcomes[sellerID]!, of: sellerID)
                if outcome == .success { Console.out(line) } else { Console.error(line) }
                worst = RefreshReport.worse(worst, outcome)
            }
            return worst
        }
    }
}

/// What `refresh` prints per seller, and the exit code it earns.
enum RefreshReport {
    static func describe(_ outcome: RefreshOutcome, of sellerID: String) -> (String, CommandOutcome) {
        switch outcome {
        case .refreshed(let requestID, let nextDue, let isFinalGrant):
            var line = "\(sellerID) refreshed; next refresh \(nextDue)"
            if let requestID { line += " (request_id \(requestID))" }
            if isFinalGrant { line += "; the refresh token cannot be used again: the seller must authorize again" }
            return (line, .success)
        case .skipped(.tokenChanged, _):
            return ("\(sellerID) was refreshed by another process meanwhile", .success)
        case .skipped(.notDue, let nextDue):
            return ("\(sellerID) not due\(nextDue.map { "; next refresh \($0)" } ?? "")", .success)
        case .skipped(.inactive, _):
            return ("\(sellerID) is not active ('tokenkeeper list' says why)", .failure)
        case .skipped(.awaitingExpiry, _):
            return ("\(sellerID): its refresh token can no longer be used; the seller must authorize again", .failure)
        case .skipped(.heldBack, _):
            return ("\(sellerID) held back: the gateway rejects our configuration", .configuration)
        case .failed(let failure, let retryAt):
            let unreachable = [
                IOPFailureCode.connectionFailed, IOPFailureCode.timeout, IOPFailureCode.tlsFailed,
            ].contains(failure.code)
            return (
                "\(sellerID) failed: \(failure); the account keeps its token (the daemon retries at \(retryAt))",
                unreachable ? .unavailable : .failure
            )
        case .configurationRejected(let failure):
            return (
                "\(sellerID): the gateway rejected our configuration: \(failure)" + ConfigurationHint.forCode(failure.code),
                .configuration
            )
        case .reauthRequired(let reason, let requestID):
            return (
                "\(sellerID) needs re-authorization (\(reason)\(requestID.map { ", request_id \($0)" } ?? "")): "
                    + "run 'tokenkeeper add --code CODE'", .failure
            )
        case .busy(let until):
            return ("\(sellerID) is being refreshed by another process (lease until \(until))", .failure)
        case .storeFailed(let message, _):
            return ("\(sellerID): storing the new tokens failed: \(message)", .failure)
        case .notFound:
            return ("no account for seller \(sellerID)", .failure)
        case .notAttempted:
            return ("\(sellerID) was not attempted", .failure)
        }
    }

    /// The exit code of several outcomes: configuration beats unreachable beats failure.
    static func worse(_ lhs: CommandOutcome, _ rhs: CommandOutcome) -> CommandOutcome {
        let rank: [Int32: Int] = [0: 0, 1: 1, 69: 2, 78: 3]
        return (rank[rhs.exitCode] ?? 1) > (rank[lhs.exitCode] ?? 1) ? rhs : lhs
    }
}

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
