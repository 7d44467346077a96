import Foundation
import IOPGateway
import Logging
import RefreshScheduler
import SQLiteStore
import TokenKeeperCore
import UnixSignals

extension Commands {
    /// `tokenkeeper refresh SELLER… | --all-due`: refreshes now, beside a
    /// running daemon (the same lease keeps one refresh per seller at a time).
    public static func refresh(sellerIDs: [String], app appText: String? = nil, allDue: Bool, configPath: String?)
        async -> CommandOutcome
    {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try AccountResolution.appName(appText)
            let logger = Logger(label: "tokenkeeper.refresh")
            let clients = try context.gatewayClients(logger: logger)
            let outcomes: [AccountKey: RefreshOutcome]
            do throws(CommandFailure) {
                outcomes = try await context.withAnyStore { store throws(CommandFailure) in
                    var targets: [AccountKey] = []
                    for sellerID in sellerIDs {
                        targets.append(try await AccountResolution.key(sellerID: sellerID, app: app, in: store))
                    }
                    if allDue {
                        let now = SystemWallClock().now()
                        let accounts = try await storeCall("listing accounts") { try await store.allAccounts() }
                        targets += accounts.filter { account in
                            account.status == .active
                                && (account.nextRefreshAt.map { $0 <= now } ?? true || account.accessToken == nil)
                        }.map(\.key).filter { app == nil || $0.app == app }
                    }
                    guard !targets.isEmpty else { return [:] }
                    let directory = context.configuration.storage.directory
                    let scheduler = RefreshScheduler(
                        store: store, gateways: clients.mapValues { $0 }, clock: context.wallClock,
                        configuration: context.configuration.schedulerConfiguration(
                            leaseOwner: CommandContext.leaseOwner(role: "cli")),
                        logger: logger,
                        onEvent: { event in
                            if case .rotationUnstored(let account, let grant, let sent) = event {
                                GrantSalvage.saveReporting(
                                    grant, account: account, replacing: sent, directory: directory, logger: logger)
                            }
                        })
                    // SIGINT/SIGTERM (Ctrl-C, a timeout wrapper) stop starting
                    // calls; the calls already sent finish and their rotated
                    // pairs are stored, then the command exits.
                    let signals = Task {
                        for await signal in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
                            Console.error(
                                "\(signal): finishing the calls already sent (their tokens rotate), starting no more")
                            await scheduler.stop()
                        }
                    }
                    defer { signals.cancel() }
                    return await scheduler.refreshNow(targets)
                }
            } catch {
                for client in clients.values { await client.shutdown() }
                throw error
            }
            for client in clients.values { await client.shutdown() }
            if outcomes.isEmpty {
                Console.out(allDue ? "no account is due" : "nothing to refresh")
                return .success
            }
            var worst = CommandOutcome.success
            for key in outcomes.keys.sorted() {
                let (line, outcome) = RefreshReport.describe(outcomes[key]!, of: key.description)
                if outcome == .success { Console.out(line) } else { Console.error(line) }
                worst = RefreshReport.worse(worst, outcome)
            }
            return worst
        }
    }
}
