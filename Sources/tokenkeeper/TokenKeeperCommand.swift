import ArgumentParser
import TokenKeeperService

/// The command line. It only parses arguments; every command's work is done by
/// `TokenKeeperService.Commands`, which also decides the exit code.
@main
struct TokenKeeperCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenkeeper",
        abstract: "Keeps AliExpress Open Platform seller tokens alive.",
        discussion: """
            Exit codes: 0 ok, 1 refused or failed, 64 usage, 69 gateway unreachable, 78 configuration.
            """,
        version: TokenKeeperVersion.current,
        subcommands: [
            Run.self, Demo.self, Status.self, Add.self, Import.self, List.self, Token.self, Refresh.self,
            AuthorizeURL.self, Disable.self, Enable.self, Remove.self, Events.self, Backup.self, CheckConfig.self,
            Migrate.self, Postgres.self, ProxyClient.self,
        ]
    )
}

/// `--config` for every command.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (default: $TOKENKEEPER_CONFIG, else /etc/tokenkeeper/config.yaml).")
    var config: String?
}

/// Runs a command's work and turns its outcome into the process exit code.
func perform(_ work: () async -> CommandOutcome) async throws {
    let outcome = await work()
    if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon in the foreground: refresh every seller before expiry (systemd Type=notify).")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await perform { await Commands.run(configPath: options.config) }
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Show tokenkeeper at work: a local gateway simulator, a few sellers with short-lived tokens, the real daemon."
    )
    @Option(help: "Stop after this many seconds (default: run until Ctrl-C).")
    var duration: Double?
    @Option(help: "How many sellers to enroll.")
    var sellers: Int = 6
    @Option(help: "Storage directory (default: a new scratch directory).")
    var directory: String?

    func validate() throws {
        if let duration, duration <= 0 { throw ValidationError("--duration must be more than 0 seconds") }
        if sellers < 2 || sellers > 1000 { throw ValidationError("--sellers must be from 2 to 1000") }
    }

    func run() async throws {
        try await perform { await Commands.demo(duration: duration, sellers: sellers, directory: directory) }
    }
}

struct Add: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exchange a seller's authorization code and store the account; prints the seller id.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "The authorization code from the redirect after the seller authorized the app.")
    var code: String
    @Option(help: "The app the seller authorized (a name under apps:); needed when there are several.")
    var app: String?

    func validate() throws {
        if code.allSatisfy(\.isWhitespace) { throw ValidationError("--code must not be empty") }
    }

    func run() async throws {
        try await perform { await Commands.add(code: code, app: app, configPath: options.config) }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import sellers from another tool: one from options, or many from a JSON Lines file.",
        discussion: """
            With --file, each line is one JSON object with the gateway's field names \
            (seller_id or user_id, refresh_token, and optionally access_token, expire_time, \
            refresh_token_valid_time, user_nick, account, ...). Bad lines are reported on stderr by \
            line number and not stored; the good ones are. Exit code 1 if any line was refused.

            A seller tokenkeeper already manages (active or disabled) is skipped and counted: its \
            stored refresh token has most likely been rotated since the input was written, and the \
            input's is dead. --replace overwrites such sellers. A seller that needs re-authorization \
            always takes the imported token.
            """)
    @OptionGroup var options: GlobalOptions
    @Option(name: .customLong("seller-id"), help: "The seller id.")
    var sellerID: String?
    @Option(
        name: .customLong("refresh-token"),
        help: "The seller's refresh token (visible to every local user in ps: prefer --refresh-token-file).")
    var refreshToken: String?
    @Option(
        name: .customLong("refresh-token-file"),
        help: "A file holding the seller's refresh token alone ('-' for standard input).")
    var refreshTokenFile: String?
    @Flag(help: "Overwrite sellers tokenkeeper already manages (their stored refresh tokens are replaced).")
    var replace = false
    @Option(name: .customLong("access-token"), help: "The seller's current access token, if any.")
    var accessToken: String?
    @Option(name: .customLong("expire-time"), help: "When the access token expires, in epoch milliseconds.")
    var expireTime: Int64?
    @Option(
        name: .customLong("refresh-token-valid-time"), help: "When the refresh token expires, in epoch milliseconds.")
    var refreshTokenValidTime: Int64?
    @Option(help: "A JSON Lines file of sellers ('-' for standard input).")
    var file: String?
    @Option(
        help:
            "The app the sellers belong to (a name under apps:); a line's own \"app\" field wins. Needed when there are several apps."
    )
    var app: String?

    func validate() throws {
        if file != nil {
            if sellerID != nil || refreshToken != nil || refreshTokenFile != nil || accessToken != nil
                || expireTime != nil || refreshTokenValidTime != nil
            {
                throw ValidationError("--file cannot be combined with the single-seller options")
            }
            return
        }
        guard let sellerID, !sellerID.isEmpty else {
            throw ValidationError("give --seller-id and --refresh-token-file, or --file")
        }
        _ = sellerID
        switch (refreshToken, refreshTokenFile) {
        case (nil, nil): throw ValidationError("--refresh-token-file (or --refresh-token) is required with --seller-id")
        case (.some, .some): throw ValidationError("give --refresh-token-file or --refresh-token, not both")
        case (let token?, nil) where token.isEmpty: throw ValidationError("--refresh-token must not be empty")
        default: break
        }
        if (accessToken == nil) != (expireTime == nil) {
            throw ValidationError("--access-token and --expire-time go together")
        }
    }

    func run() async throws {
        if let file {
            try await perform {
                await Commands.importFile(path: file, app: app, replace: replace, configPath: options.config)
            }
        } else {
            let source: RefreshTokenSource = refreshTokenFile.map { .file($0) } ?? .argument(refreshToken!)
            let record = ImportRequest(
                sellerID: sellerID!, refreshToken: source, accessToken: accessToken,
                expireTime: expireTime, refreshTokenValidTime: refreshTokenValidTime, replace: replace, app: app)
            try await perform { await Commands.importOne(record, configPath: options.config) }
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "List every account: status, reason, access expiry, re-authorization deadline, next refresh, last error.")
    @OptionGroup var options: GlobalOptions
    @Flag(help: "Print one JSON array of objects.")
    var json = false
    @Option(help: "Only the sellers of this app (a name under apps:).")
    var app: String?

    func run() async throws {
        try await perform { await Commands.list(json: json, app: app, configPath: options.config) }
    }
}

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a seller's access token if the account is active and the token unexpired; else exit 1.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "The seller id.")
    var seller: String
    @Option(help: "The app the seller belongs to (a name under apps:); needed when several apps have the seller.")
    var app: String?

    func run() async throws {
        try await perform { await Commands.token(sellerID: seller, app: app, configPath: options.config) }
    }
}

struct Refresh: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Refresh sellers now, safely beside a running daemon.")
    @OptionGroup var options: GlobalOptions
    @Flag(name: .customLong("all-due"), help: "Refresh every active seller whose refresh is due.")
    var allDue = false
    @Argument(help: "Seller ids.")
    var sellers: [String] = []
    @Option(help: "The app the sellers belong to (a name under apps:); with --all-due, only that app's sellers.")
    var app: String?

    func validate() throws {
        if allDue == !sellers.isEmpty { throw ValidationError("give seller ids or --all-due (not both)") }
    }

    func run() async throws {
        try await perform {
            await Commands.refresh(sellerIDs: sellers, app: app, allDue: allDue, configPath: options.config)
        }
    }
}

struct AuthorizeURL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authorize-url", abstract: "Print the URL a seller opens to authorize the app.")
    @OptionGroup var options: GlobalOptions
    @Option(
        help: "The seller the link is for: its state is signed, single-use, and expires after callback.state_ttl_hours."
    )
    var seller: String?
    @Option(help: "An opaque value of your own for the redirect to carry back (instead of --seller).")
    var state: String?
    @Option(help: "The app to authorize (a name under apps:); needed when there are several and the seller is new.")
    var app: String?

    func run() async throws {
        try await perform {
            await Commands.authorizeURL(sellerID: seller, app: app, state: state, configPath: options.config)
        }
    }
}

struct Disable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop refreshing a seller (kept, marked disabled).")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "The seller id.") var seller: String
    @Option(help: "The app the seller belongs to (a name under apps:); needed when several apps have the seller.")
    var app: String?

    func run() async throws {
        try await perform { await Commands.setEnabled(false, sellerID: seller, app: app, configPath: options.config) }
    }
}

struct Enable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Resume refreshing a disabled seller.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "The seller id.") var seller: String
    @Option(help: "The app the seller belongs to (a name under apps:); needed when several apps have the seller.")
    var app: String?

    func run() async throws {
        try await perform { await Commands.setEnabled(true, sellerID: seller, app: app, configPath: options.config) }
    }
}

struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a seller and its tokens from both databases.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "The seller id.") var seller: String
    @Option(help: "The app the seller belongs to (a name under apps:); needed when several apps have the seller.")
    var app: String?

    func run() async throws {
        try await perform { await Commands.remove(sellerID: seller, app: app, configPath: options.config) }
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate the configuration and the app secret; exit 78 if wrong.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await perform { await Commands.checkConfig(configPath: options.config) }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "One screen: daemon and health, counts, next refreshes, who must authorize again (with links), failures, notifications."
    )
    @OptionGroup var options: GlobalOptions
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() async throws {
        try await perform { await Commands.status(json: json, configPath: options.config) }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read the audit trail (events in keeper.db), oldest first among the newest --limit.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "Only this seller's events.")
    var seller: String?
    @Option(help: "Only the events of this app (a name under apps:).")
    var app: String?
    @Option(
        help: "Only events at or after this time: ISO 8601 (2026-12-01T08:00:00Z), a date, or an age (30m, 6h, 2d).")
    var since: String?
    @Option(
        help:
            "Only events of this kind (refreshed, refresh_failed, reauth_required, reauth_due, reactivated, degraded, recovered, enrolled, imported, ...)."
    )
    var kind: String?
    @Option(help: "At most this many events.")
    var limit = 100
    @Flag(help: "One JSON object per line.")
    var json = false

    func run() async throws {
        try await perform {
            await Commands.events(
                sellerID: seller, app: app, since: since, kind: kind, limit: limit, json: json,
                configPath: options.config)
        }
    }
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy keeper.db to DEST (mode 0600) through SQLite's online backup, safe while the daemon refreshes.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "The new file; an existing one is never overwritten.")
    var destination: String

    func run() async throws {
        try await perform { await Commands.backup(destination: destination, configPath: options.config) }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy keeper.db into an empty PostgreSQL schema (storage.postgres.*), the daemon stopped, and verify "
            + "the count and every refresh token.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "The backend to copy to: postgres.")
    var to: String

    func validate() throws {
        guard to == "postgres" else { throw ValidationError("--to must be postgres") }
    }

    func run() async throws {
        try await perform { await Commands.migrateToPostgres(configPath: options.config) }
    }
}

struct Postgres: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set up the PostgreSQL backend.", subcommands: [PostgresInit.self])
}

struct PostgresInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create or upgrade the schema, and the role tokenkeeper_reader that may read tokens and valid_tokens "
            + "and nothing else.")
    @OptionGroup var options: GlobalOptions
    @Option(
        help: ArgumentHelp(
            "A file (mode 0600) holding the password readers log in with (else $TOKENKEEPER_READER_PASSWORD; "
                + "without either the role cannot log in)."))
    var readerPasswordFile: String?
    @Flag(help: "Print the SQL for a DBA to run instead, and connect to nothing.")
    var printSQL = false

    func run() async throws {
        try await perform {
            await Commands.postgresInit(
                readerPasswordFile: readerPasswordFile, printSQL: printSQL, configPath: options.config)
        }
    }
}

struct ProxyClient: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy-client", abstract: "Manage the signing proxy's clients.", subcommands: [ProxyClientNew.self]
    )
}

struct ProxyClientNew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Print a fresh key and secret for a proxy client, and the lines to add to the configuration.")
    @Argument(help: "The client's name (a-z, 0-9, _ and -), e.g. orders.")
    var name: String
    @Option(help: "Write the secret to this new file (mode 0600) instead of printing it.")
    var secretFile: String?
    @Option(help: "The proxy's proxy.listen, for the URL printed (default 127.0.0.1:8902).")
    var listen: String?

    func run() async throws {
        try await perform { Commands.newProxyClient(name: name, secretFile: secretFile, listen: listen) }
    }
}
