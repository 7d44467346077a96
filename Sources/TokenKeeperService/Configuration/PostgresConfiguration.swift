import Foundation
import PostgresStore
public import TokenKeeperCore

extension ConfigurationLoader {
    /// `storage.postgres.*`, checked whatever the backend so that a typo
    /// shows before the day it is switched on; required only for `postgres`.
    static func validatePostgres(_ storage: TokenKeeperConfiguration.Storage) throws(ConfigurationError) {
        let postgres = storage.postgres
        try range(postgres.heartbeatSeconds, 0.2...60, "storage.postgres.heartbeat_seconds")
        try range(postgres.takeoverSeconds, 0.5...3600, "storage.postgres.takeover_seconds")
        try range(Double(postgres.maxConnections), 2...200, "storage.postgres.max_connections")
        try range(postgres.statementTimeoutSeconds, 0.5...600, "storage.postgres.statement_timeout_seconds")
        if let tls = postgres.tls, PostgresSettings.TLSMode(rawValue: tls) == nil {
            throw ConfigurationError(
                key: "storage.postgres.tls", problem: "\"\(tls)\" is not a TLS mode",
                remedy: "use one of " + PostgresSettings.TLSMode.allCases.map(\.rawValue).joined(separator: ", "))
        }
        guard storage.backend == .postgres || postgres.url != nil else { return }
        guard let url = postgres.url, !url.isEmpty else {
            throw ConfigurationError(
                key: "storage.postgres.url", problem: "is required with storage.backend postgres",
                remedy: "set it to postgres://USER@HOST:PORT/DATABASE")
        }
        do {
            _ = try PostgresSettings(
                url: url, password: nil, schema: postgres.schema,
                tls: postgres.tls.flatMap(PostgresSettings.TLSMode.init(rawValue:)))
        } catch {
            throw ConfigurationError(key: error.key, problem: error.problem, remedy: error.remedy)
        }
    }
}

extension AppSecretLoader {
    /// The PostgreSQL password: systemd's credential `postgres_password`, else
    /// `storage.postgres.password_file` (mode-checked), else
    /// `TOKENKEEPER_STORAGE_POSTGRES_PASSWORD`; nil when none is set (trust
    /// or peer authentication, a Unix socket).
    public func postgresPassword(for configuration: TokenKeeperConfiguration) throws(ConfigurationError) -> Secret? {
        let what = "the PostgreSQL password"
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            let path = directory + "/postgres_password"
            if FileManager.default.fileExists(atPath: path) {
                return try Self.readSecretFile(path, key: "postgres_password credential", checkMode: false, what: what)
            }
        }
        if let path = configuration.storage.postgres.passwordFile {
            return try Self.readSecretFile(path, key: "storage.postgres.password_file", checkMode: true, what: what)
        }
        if let value = environment["TOKENKEEPER_STORAGE_POSTGRES_PASSWORD"], !value.isEmpty {
            return Secret(value)
        }
        return nil
    }
}

extension TokenKeeperConfiguration {
    /// The PostgreSQL store's settings, the password resolved.
    func postgresSettings(environment: [String: String]) throws(ConfigurationError) -> PostgresSettings {
        let postgres = storage.postgres
        guard let url = postgres.url else {
            throw ConfigurationError(
                key: "storage.postgres.url", problem: "is not set",
                remedy: "set it to postgres://USER@HOST:PORT/DATABASE")
        }
        let password = try AppSecretLoader(environment: environment).postgresPassword(for: self)
        do {
            var settings = try PostgresSettings(
                url: url, password: password?.exposedValue, schema: postgres.schema,
                tls: postgres.tls.flatMap(PostgresSettings.TLSMode.init(rawValue:)), caFile: postgres.tlsCAFile,
                maximumConnections: max(postgres.maxConnections, refresh.concurrency + 3))
            settings.statementTimeout = .milliseconds(Int64(postgres.statementTimeoutSeconds * 1000))
            return settings
        } catch {
            throw ConfigurationError(key: error.key, problem: error.problem, remedy: error.remedy)
        }
    }
}
