import Foundation
import IOPGateway
import Logging
import SQLiteStore
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Commands {
    /// `tokenkeeper add --code CODE`: exchanges an authorization code and
    /// stores the seller (a re-authorized seller gets new tokens and becomes
    /// active); prints the seller id.
    public static func add(code: String, app appText: String? = nil, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try context.app(named: try AccountResolution.appName(appText))
            let account = try await enroll(code: code, app: app, context: context)
            Console.out(account.sellerID)
            return .success
        }
    }

    /// Exchanges an authorization code at the gateway and stores the seller.
    ///
    /// A code is single-use: the store is opened and a write is tried
    /// *before* the code is exchanged, so an unusable store costs the seller
    /// nothing. If storing still fails afterwards, the grant is written to a
    /// 0600 file beside the store and the command says how to import it.
    static func enroll(code: String, app settings: TokenKeeperConfiguration.AppSettings, context: CommandContext)
        async throws(CommandFailure) -> Account
    {
        let app = settings.name
        return try await context.withAnyStore(creating: true) { store throws(CommandFailure) in
            try await storeCall("checking that the store can be written before the code is spent") {
                try await store.checkWritable()
            }
            let client = try context.gatewayClient(for: settings, logger: Logger(label: "tokenkeeper.add"))
            let result: Result<TokenGrant, GatewayFailure>
            do throws(GatewayFailure) {
                result = .success(try await client.createToken(code: code.trimmingCharacters(in: .whitespaces)))
            } catch {
                result = .failure(error)
            }
            await client.shutdown()
            let grant: TokenGrant
            switch result {
            case .success(let value): grant = value
            case .failure(let failure):
                if failure.isUnknownCode || failure.failureClass == .accountRejected {
                    throw CommandFailure(
                        .failure,
                        "the authorization code was refused: \(failure); codes are single-use and expire "
                            + "within minutes: ask the seller to authorize again ('tokenkeeper authorize-url')")
                }
                throw CommandFailure.gateway(failure, doing: "exchanging the authorization code")
            }
            var random = SystemRandomNumberGenerator()
            let nextRefresh = context.configuration.refreshPolicy.nextRefresh(after: grant, using: &random)
            let now = SystemWallClock().now()
            do {
                return try await store.enroll(app: app, grant: grant, nextRefreshAt: nextRefresh, now: now)
            } catch {
                throw salvageFailure(
                    grant, app: app, error: error, directory: context.configuration.storage.directory, now: now)
            }
        }
    }

    /// The failure for a grant that was issued and could not be stored: it is
    /// saved to a file first, and the message says where and what to do.
    private static func salvageFailure(
        _ grant: TokenGrant, app: AppName, error: any Error, directory: String, now: Timestamp
    ) -> CommandFailure {
        let seller = grant.sellerID.isEmpty ? "(the answer named no seller)" : grant.sellerID
        let spent = "the authorization code was spent at the gateway for seller \(seller), but storing failed: \(error)"
        do {
            let path = try GrantSalvage.save(
                grant, account: AccountKey(app: app, sellerID: grant.sellerID), replacing: nil, directory: directory,
                now: now)
            return CommandFailure(
                .failure,
                "\(spent). The tokens were saved to \(path) (mode 0600): fix the store, run "
                    + "'tokenkeeper import --replace --file \(path)', then delete the file")
        } catch let saveError {
            return CommandFailure(
                .failure,
                "\(spent). Saving the tokens to a file failed too (\(saveError)): the seller must authorize again")
        }
    }

    /// `tokenkeeper import --seller-id … --refresh-token-file F`: one seller
    /// from options; the refresh token from a file or stdin (`-`), or, with a
    /// warning, from the command line.
    public static func importOne(_ request: ImportRequest, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try context.app(named: try AccountResolution.appName(request.app))
            let refreshToken = try readRefreshToken(request.refreshToken)
            let seller = ImportRecord(
                app: app.name, sellerID: request.sellerID, refreshToken: refreshToken,
                accessToken: request.accessToken.map(Secret.init),
                expireTime: request.expireTime.map(Timestamp.init(millisecondsSince1970:)),
                refreshTokenValidTime: request.refreshTokenValidTime.map(Timestamp.init(millisecondsSince1970:)),
                profile: SellerProfile())
            return try await importSellers(
                [(0, seller)], lineErrors: [], replace: request.replace, context: context, describe: { _ in "" })
        }
    }

    /// The refresh token from where the command line said it is.
    private static func readRefreshToken(_ source: RefreshTokenSource) throws(CommandFailure) -> Secret {
        let text: String
        switch source {
        case .argument(let value):
            Console.error(
                "warning: a refresh token on the command line is visible to every local user (ps, /proc) "
                    + "and stays in shell history; use --refresh-token-file FILE or --refresh-token-file - (stdin)")
            text = value
        case .file(let path):
            let data: Data
            do {
                data =
                    path == "-"
                    ? FileHandle.standardInput.readDataToEndOfFile()
                    : try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw CommandFailure(.usage, "cannot read --refresh-token-file \(path): \(error.localizedDescription)")
            }
            text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard !text.isEmpty, !text.contains(where: \.isWhitespace) else {
            throw CommandFailure(
                .usage, "the refresh token is empty or has spaces inside; the file must hold the token alone")
        }
        return Secret(text)
    }

    /// Lines parsed together by `import --file`, while the chunk before is
    /// being stored. The store writes a chunk in transactions of about
    /// 100 ms at most: a daemon writing meanwhile waits about that long.
    static let importChunkLines = 25_000

    /// `tokenkeeper import --file F.jsonl` ('-' for stdin): bad lines are
    /// reported by number and not stored, the good ones are; exit 1 if any
    /// line was refused.
    ///
    /// A pipeline of chunks: parsing a chunk (this task) overlaps with storing
    /// the one before (the store's queue), so a million lines use both cores
    /// and hold only two chunks of records at a time.
    public static func importFile(path: String, app appText: String? = nil, replace: Bool, configPath: String?) async
        -> CommandOutcome
    {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let apps = try importApps(named: appText, context: context)
            let data: Data
            do {
                data =
                    path == "-"
                    ? FileHandle.standardInput.readDataToEndOfFile()
                    : try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
            } catch {
                throw CommandFailure(.usage, "cannot read import file \(path): \(error.localizedDescription)")
            }
            let now = SystemWallClock().now()
            let policy = context.configuration.refreshPolicy
            var totals = ImportTotals()
            try await context.withAnyStore(creating: true) { store throws(CommandFailure) in
                try await storeCall("importing") {
                    do {
                        try await importChunks(
                            of: data, into: store, apps: apps, replace: replace, policy: policy, now: now,
                            totals: &totals)
                    } catch SQLiteStoreError.importInterrupted(let imported, let error) {
                        // Counted from the start of the file, not of the chunk.
                        throw SQLiteStoreError.importInterrupted(imported: totals.imported + imported, error: error)
                    }
                }
            }
            return totals.report()
        }
    }

    /// The apps an import may name, and the app of lines that name none:
    /// `--app`, else the configuration's only app.
    static func importApps(named text: String?, context: CommandContext) throws(CommandFailure) -> ImportApps {
        let configured = context.configuration.apps.map(\.name)
        let named = try AccountResolution.appName(text)
        if let named, !configured.contains(named) {
            _ = try context.app(named: named)  // refused, naming the apps there are
        }
        return ImportApps(fallback: named ?? (configured.count == 1 ? configured[0] : nil), known: Set(configured))
    }

    private static func importChunks(
        of data: Data, into store: any ManagedAccountStore, apps: ImportApps, replace: Bool, policy: RefreshPolicy,
        now: Timestamp, totals: inout ImportTotals
    ) async throws {
        var random = SplitMix64()
        var storing: (task: Task<ImportSummary, any Error>, lines: [Int])?
        var chunk = ImportChunk()
        var number = 0
        func startStoring(_ chunk: ImportChunk) -> (task: Task<ImportSummary, any Error>, lines: [Int]) {
            let records = chunk.records
            let task = Task {
                try await store.importAccounts(records, replace: replace, batchSize: max(1, records.count), now: now)
            }
            return (task, chunk.lines)
        }
        try await ImportChunk.forEachLine(in: data) { line in
            number += 1
            chunk.add(line, number: number, apps: apps, policy: policy, now: now, random: &random, totals: &totals)
            return chunk.lines.count >= importChunkLines
        } whenFull: {
            if let storing { totals.add(try await storing.task.value, lines: storing.lines) }
            storing = startStoring(chunk)
            chunk = ImportChunk()
        }
        if let storing { totals.add(try await storing.task.value, lines: storing.lines) }
        if !chunk.lines.isEmpty { totals.add(try await startStoring(chunk).task.value, lines: chunk.lines) }
    }

    /// Stores parsed sellers and reports what was refused, by line.
    private static func importSellers(
        _ sellers: [(line: Int, seller: ImportRecord)], lineErrors: [ImportLineError], replace: Bool,
        context: CommandContext, describe: @escaping (Int) -> String
    ) async throws(CommandFailure) -> CommandOutcome {
        for error in lineErrors { Console.error("refused \(error)") }
        let now = SystemWallClock().now()
        let policy = context.configuration.refreshPolicy
        var random = SplitMix64()
        let records = sellers.map { entry in
            var record = entry.seller
            record.nextRefreshAt = firstRefresh(of: record, policy: policy, now: now, random: &random)
            return record
        }
        let summary = try await context.withAnyStore(creating: true) { store throws(CommandFailure) in
            try await storeCall("importing") {
                try await store.importAccounts(records, replace: replace, batchSize: nil, now: now)
            }
        }
        var totals = ImportTotals(lineErrors: lineErrors.count, describe: describe)
        totals.add(summary, lines: sellers.map(\.line))
        return totals.report()
    }

    /// When an imported seller is first refreshed: at once without a usable
    /// access token, else as the policy says for the token in hand.
    static func firstRefresh(
        of seller: ImportRecord, policy: RefreshPolicy, now: Timestamp, random: inout some RandomNumberGenerator
    ) -> Timestamp? {
        guard seller.accessToken != nil, let expireTime = seller.expireTime, expireTime > now else { return nil }
        let account = Account(
            sellerID: seller.sellerID, refreshToken: seller.refreshToken, accessToken: seller.accessToken,
            expireTime: expireTime, accessTokenLifetime: seller.accessTokenLifetime,
            refreshTokenValidTime: seller.refreshTokenValidTime, updatedAt: now)
        return policy.nextRefresh(for: account, now: now, using: &random)
    }

    /// `tokenkeeper token SELLER`: the access token on stdout if the account
    /// is active and the token unexpired; else the reason on stderr and exit 1.
    /// A user that may only read tokens.db (the readers' group) gets the
    /// answer from tokens.db; the service user gets it from keeper.db, with
    /// the precise reason.
    public static func token(sellerID: String, app appText: String? = nil, configPath: String?) async
        -> CommandOutcome
    {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try AccountResolution.appName(appText)
            let directory = context.configuration.storage.directory
            let now = SystemWallClock().now()
            let status: AccountStatus
            let reason: String?
            let accessToken: Secret?
            let expireTime: Timestamp?
            var lastError: String?
            // What the remedies name: ` --app NAME` for an app of an `apps:` map.
            var appOption = ""
            if context.canOpenConfiguredStore {
                let account = try await context.withAnyStore { store throws(CommandFailure) in
                    let key = try await AccountResolution.key(sellerID: sellerID, app: app, in: store)
                    return try await storeCall("reading seller \(key)") { try await store.account(key) }
                }
                guard let account else {
                    throw CommandFailure(.failure, "no account for seller \(sellerID) ('tokenkeeper list' shows them)")
                }
                if context.configuration.declaresApps { appOption = " --app \(account.app)" }
                (status, reason, accessToken, expireTime) =
                    (account.status, account.statusReason, account.accessToken, account.expireTime)
                lastError = account.lastError
            } else {
                let rows: [ReadersView.Row]
                do {
                    rows = try ReadersView.rows(sellerID: sellerID, app: app, directory: directory)
                } catch {
                    throw CommandFailure(.failure, "cannot read \(directory)/tokens.db: \(error)")
                }
                if rows.count > 1 {
                    throw CommandFailure(
                        .usage,
                        "seller \(sellerID) is enrolled under several apps (\(rows.map(\.app).joined(separator: ", "))): "
                            + "name one with --app")
                }
                guard let row = rows.first else {
                    throw CommandFailure(
                        .failure,
                        "no access token for seller \(sellerID) in tokens.db (unknown seller, or not "
                            + "refreshed yet)")
                }
                (status, reason, accessToken, expireTime) =
                    (row.status ?? .disabled, row.statusReason, row.accessToken, row.expireTime)
            }
            switch status {
            case .reauthRequired:
                throw CommandFailure(
                    .failure,
                    "seller \(sellerID) needs re-authorization (\(reason ?? "refresh refused")): "
                        + "run 'tokenkeeper add\(appOption) --code CODE' with a new authorization code")
            case .disabled:
                throw CommandFailure(
                    .failure, "seller \(sellerID) is disabled ('tokenkeeper enable\(appOption) \(sellerID)')")
            case .active:
                break
            }
            guard let accessToken, let expireTime else {
                throw CommandFailure(
                    .failure,
                    "seller \(sellerID) has no access token yet; it gets one at its first refresh "
                        + "(is the daemon running? 'tokenkeeper refresh\(appOption) \(sellerID)' refreshes now)")
            }
            guard expireTime > now else {
                throw CommandFailure(
                    .failure,
                    "the access token of seller \(sellerID) expired at \(expireTime)"
                        + (lastError.map { "; last refresh error: \($0)" } ?? ""))
            }
            Console.out(accessToken.exposedValue)
            return .success
        }
    }

    /// `tokenkeeper enable|disable SELLER`.
    public static func setEnabled(_ enabled: Bool, sellerID: String, app appText: String? = nil, configPath: String?)
        async -> CommandOutcome
    {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try AccountResolution.appName(appText)
            let policy = context.configuration.refreshPolicy
            let account = try await context.withAnyStore { store throws(CommandFailure) in
                let key = try await AccountResolution.key(sellerID: sellerID, app: app, in: store)
                return try await storeCall(enabled ? "enabling seller \(key)" : "disabling seller \(key)") {
                    let now = SystemWallClock().now()
                    var nextRefresh: Timestamp?
                    if enabled, let stored = try await store.account(key) {
                        var random = SystemRandomNumberGenerator()
                        nextRefresh = policy.nextRefresh(for: stored, now: now, using: &random)
                    }
                    return try await store.setStatus(
                        account: key, to: enabled ? .active : .disabled, nextRefreshAt: nextRefresh, now: now)
                }
            }
            Console.out("\(account.key) \(account.status.rawValue)")
            return .success
        }
    }

    /// `tokenkeeper remove SELLER`: the account and its readers' row go; its events stay.
    public static func remove(sellerID: String, app appText: String? = nil, configPath: String?) async
        -> CommandOutcome
    {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try AccountResolution.appName(appText)
            let key = try await context.withAnyStore { store throws(CommandFailure) in
                let key = try await AccountResolution.key(sellerID: sellerID, app: app, in: store)
                try await storeCall("removing seller \(key)") {
                    try await store.remove(account: key, now: SystemWallClock().now())
                }
                return key
            }
            Console.out("\(key) removed")
            return .success
        }
    }
}
