import Foundation
import NIOSSL
import PostgresNIO
import TokenKeeperCore

/// Where the PostgreSQL store is and how to reach it: `storage.postgres.*`.
///
/// The password never comes from the URL (which is logged): from the systemd
/// credential `postgres_password`, `storage.postgres.password_file` or
/// `TOKENKEEPER_STORAGE_POSTGRES_PASSWORD`, resolved by the caller.
public struct PostgresSettings: Sendable, Equatable {
    /// How the connection is encrypted, in libpq's words.
    /// Whenever TLS is used, the server's certificate is checked, unless the
    /// mode says otherwise by name (`require-unverified`).
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Never.
        case disable
        /// When the server offers it, checked as `verify-full`; in clear
        /// otherwise (an on-path attacker can refuse TLS).
        case prefer
        /// Always, checked as `verify-full` (unlike libpq's `require`, which
        /// checks nothing: that is `require-unverified`).
        case require
        /// Always, with the certificate checked against `tls_ca_file` (or the
        /// system's roots) and the host name. The default over TCP.
        case verifyFull = "verify-full"
        /// Always, with no check of the certificate: encrypted, but the
        /// server is not authenticated (an on-path attacker can stand in).
        case requireUnverified = "require-unverified"
    }

    /// What a log line and `check-config` say when the server is not
    /// authenticated (nil when it is, or the connection never leaves the
    /// machine: a Unix socket or a loopback address in clear).
    public var unauthenticatedServer: String? {
        let local = host == nil || host.map(Self.isLoopback) == true
        switch tls {
        case .verifyFull, .require: return nil
        case .disable:
            return local
                ? nil
                : "storage.postgres.tls is disable: tokens cross the network in clear, to a server that is not "
                    + "authenticated; use verify-full"
        case .prefer:
            return local
                ? nil
                : "storage.postgres.tls is prefer: an on-path attacker can refuse TLS and read every token in "
                    + "clear; use verify-full"
        case .requireUnverified:
            return "storage.postgres.tls is require-unverified: the server's certificate is not checked, so an "
                + "on-path attacker can stand in for it and read every token; use verify-full"
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// A TCP host, or nil for a Unix socket (`socketPath`).
    public var host: String?
    public var port: Int
    /// The socket file, `DIR/.s.PGSQL.PORT`, when `host` is nil.
    public var socketPath: String?
    public var username: String
    public var database: String
    /// The schema every table and view lives in.
    public var schema: String
    public var tls: TLSMode
    public var caFile: String?
    public var password: String?
    /// The most connections this process opens.
    public var maximumConnections: Int
    /// How long one statement may take, waiting for a connection included,
    /// before it counts as failed.
    public var statementTimeout: Duration = .seconds(10)
    /// How long a statement waits for a row or table lock another session
    /// holds (a command's transaction, a reader's `SELECT … FOR UPDATE`)
    /// before PostgreSQL ends the wait with 55P03: contention, which the
    /// scheduler retries at once and never counts as the store failing. Kept
    /// well under ``statementTimeout``, whose end is a failure. Nil: no
    /// lock timeout (a command waits for another's transaction). The
    /// outbox's numbering lock is waited for either way (schema v3).
    public var lockTimeout: Duration?

    /// The daemon's lock timeout under `statementTimeout`.
    public static func daemonLockTimeout(statementTimeout: Duration) -> Duration {
        min(.seconds(2), statementTimeout / 4)
    }
    /// How long a node's claim on a delivery stands by itself: past it, the
    /// delivery is taken over by another node once the claimant's heartbeat
    /// has stopped too (a live node's claim stands; see
    /// `PostgresAccountStore.dueDeliveries`).
    public var deliveryClaim: Duration = .seconds(30)
    /// A notification is only a hint, and any role may send one: a full
    /// reload of the schedule (`*`, or too many sellers announced at once)
    /// happens at most once per this, whatever arrives.
    public var fullReloadInterval: Duration = .seconds(5)
    /// Sellers announced and not yet read, at most; past it, one full
    /// reload instead (the set stays bounded whatever is sent).
    public var maxPendingChanges = 10_000

    public static let defaultSchema = "tokenkeeper"

    public init(
        url: String, password: String?, schema: String = defaultSchema, tls: TLSMode? = nil, caFile: String? = nil,
        maximumConnections: Int = 8
    ) throws(PostgresSettingsError) {
        guard let components = URLComponents(string: url),
            let scheme = components.scheme, scheme == "postgres" || scheme == "postgresql"
        else {
            throw PostgresSettingsError(
                key: "storage.postgres.url", problem: "is not a postgres:// URL",
                remedy: "write it as postgres://USER@HOST:PORT/DATABASE")
        }
        guard components.password == nil else {
            throw PostgresSettingsError(
                key: "storage.postgres.url", problem: "carries a password, which would end up in logs",
                remedy: "remove it from the URL and put it in the systemd credential postgres_password, "
                    + "storage.postgres.password_file or TOKENKEEPER_STORAGE_POSTGRES_PASSWORD")
        }
        guard let user = components.user, !user.isEmpty else {
            throw PostgresSettingsError(
                key: "storage.postgres.url", problem: "names no user",
                remedy: "write it as postgres://USER@HOST:PORT/DATABASE")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw PostgresSettingsError(
                key: "storage.postgres.url", problem: "names no database",
                remedy: "write it as postgres://USER@HOST:PORT/DATABASE")
        }
        guard Self.isPlainIdentifier(schema) else {
            throw PostgresSettingsError(
                key: "storage.postgres.schema", problem: "\"\(schema)\" is not a plain lower-case identifier",
                remedy: "use letters a-z, digits and _ (at most 40), starting with a letter or _")
        }
        let port = components.port ?? 5432
        let socketDirectory = components.queryItems?.first { $0.name == "host" }?.value
        if let socketDirectory, socketDirectory.hasPrefix("/") {
            host = nil
            socketPath = socketDirectory + "/.s.PGSQL.\(port)"
        } else {
            guard let name = components.host, !name.isEmpty else {
                throw PostgresSettingsError(
                    key: "storage.postgres.url", problem: "names no host",
                    remedy: "write it as postgres://USER@HOST:PORT/DATABASE, or ?host=/socket/dir for a Unix socket")
            }
            host = name
            socketPath = nil
        }
        if let tls, tls != .disable, host == nil {
            throw PostgresSettingsError(
                key: "storage.postgres.tls", problem: "\(tls.rawValue) needs a TCP host, not a Unix socket",
                remedy: "connect over TCP, or leave storage.postgres.tls unset (or disable) for a local socket")
        }
        self.port = port
        self.username = user.removingPercentEncoding ?? user
        self.database = database.removingPercentEncoding ?? database
        self.schema = schema
        // Unset: checked TLS over TCP; a Unix socket never leaves the machine.
        self.tls = tls ?? (host == nil ? .disable : .verifyFull)
        self.caFile = caFile
        self.password = password
        self.maximumConnections = maximumConnections
    }

    /// The URL as it may be logged: no password (none is ever in it).
    public var displayURL: String {
        if let socketPath { return "postgres://\(username)@/\(database)?socket=\(socketPath)" }
        return "postgres://\(username)@\(host ?? ""):\(port)/\(database)"
    }

    static func isPlainIdentifier(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 40 else { return false }
        guard first == UInt8(ascii: "_") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else {
            return false
        }
        return name.utf8.allSatisfy {
            $0 == UInt8(ascii: "_") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
        }
    }

    /// postgres-nio's client settings.
    func clientConfiguration() throws -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketPath {
            configuration = PostgresClient.Configuration(
                unixSocketPath: socketPath, username: username, password: password, database: database)
        } else {
            configuration = PostgresClient.Configuration(
                host: host ?? "localhost", port: port, username: username, password: password, database: database,
                tls: try tlsConfiguration())
        }
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.keepAliveBehavior = .init(frequency: .seconds(15))
        configuration.options.additionalStartupParameters = [("application_name", "tokenkeeper")]
        if let lockTimeout {
            configuration.options.additionalStartupParameters.append(
                ("lock_timeout", "\(max(lockTimeout.wholeMilliseconds, 1))ms"))
        }
        return configuration
    }

    private func tlsConfiguration() throws -> PostgresClient.Configuration.TLS {
        var context = TLSConfiguration.makeClientConfiguration()
        switch tls {
        case .disable:
            return .disable
        case .prefer:
            context.certificateVerification = .fullVerification
            if let caFile { context.trustRoots = .file(caFile) }
            return .prefer(context)
        case .require, .verifyFull:
            context.certificateVerification = .fullVerification
            if let caFile { context.trustRoots = .file(caFile) }
            return .require(context)
        case .requireUnverified:
            context.certificateVerification = .none
            return .require(context)
        }
    }
}

/// A `storage.postgres.*` setting that cannot be used.
public struct PostgresSettingsError: Error, Sendable, CustomStringConvertible {
    public var key: String
    public var problem: String
    public var remedy: String

    public var description: String { "\(key) \(problem): \(remedy)" }
}
