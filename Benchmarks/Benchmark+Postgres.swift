import Foundation
import IOPSimulator
import TokenKeeperCore
import TokenKeeperTesting

extension Benchmark {
    /// Section 8: the PostgreSQL backend, against a real server of the
    /// benchmark's own (Debian's `postgresql`: initdb into a scratch
    /// directory, a loopback port; its default settings, `fsync` on):
    /// refreshes per second with one node and with two on one database, and
    /// the start to READY=1 at `--pg-accounts` sellers.
    func measurePostgres() async throws {
        guard PostgresServer.isAvailable else {
            report.note("skipped: no PostgreSQL here (apt install postgresql)")
            return
        }
        let server = try await PostgresServer.started()
        defer { try? server.stop(mode: "immediate") }
        let sellers = options.due
        let one = try await postgresDrain(server, database: "one_node", sellers: sellers, nodes: 1)
        let two = try await postgresDrain(server, database: "two_nodes", sellers: sellers, nodes: 2)
        report.record([
            Figure(
                name: "refreshes/s, one node, concurrency \(options.concurrency)", value: one.perSecond, unit: "/s",
                target: .atLeast(1_500), detail: "(\(one))"),
            Figure(
                name: "refreshes/s, two nodes", value: two.perSecond, unit: "/s", detail: "(\(two))"),
            Figure(
                name: "two nodes ÷ one", value: one.perSecond > 0 ? two.perSecond / one.perSecond : 0, unit: "×",
                decimals: 2, target: .atLeast(1.6)),
        ])
        try await postgresStart(server, accounts: options.postgresAccounts)
    }

    /// Imports `sellers` due at once into a new database and drains them
    /// with `nodes` daemons on it.
    private func postgresDrain(_ server: PostgresServer, database: String, sellers: Int, nodes: Int) async throws
        -> Drain
    {
        try await withRig("postgres-\(database)") { rig in
            let target = try PostgresTarget.create(on: server, database: database, in: rig.directory)
            try rig.writeConfig(
                DaemonSettings(concurrency: options.concurrency, maxCallsPerSecond: 0, postgres: target))
            let due = try rig.seed(
                SellerBatch(count: sellers, accessTokenLifetime: .seconds(600), withAccessToken: false),
                file: "due.jsonl")
            var daemons: [ChildProcess] = []
            do {
                for node in 0..<nodes { daemons.append(try await rig.startDaemon(name: "daemon-\(node)").daemon) }
                let drain = try await rig.importAndDrain(due.path, sellers: sellers)
                for daemon in daemons { _ = try await daemon.terminate() }
                report.record(
                    integrity(rig.simulator.counters).map { figure in
                        var named = figure
                        named.name = (nodes == 1 ? "one node: " : "two nodes: ") + figure.name
                        return named
                    })
                return drain
            } catch {
                for daemon in daemons { _ = try? await daemon.terminate() }
                throw error
            }
        }
    }

    /// Imports `accounts` sellers with week-long tokens and times a daemon's
    /// start to READY=1 over them, and its resident memory then.
    private func postgresStart(_ server: PostgresServer, accounts: Int) async throws {
        try await withRig("postgres-start") { rig in
            let target = try PostgresTarget.create(on: server, database: "fleet", in: rig.directory)
            try rig.writeConfig(DaemonSettings(concurrency: options.concurrency, postgres: target))
            let fleet = try rig.seed(
                SellerBatch(count: accounts, accessTokenLifetime: .seconds(7 * 86_400), withAccessToken: true),
                file: "fleet.jsonl")
            let imported = try await rig.importFile(fleet.path)
            let (startToReady, residentKiB) = try await withDaemon(rig) { daemon, startToReady in
                (startToReady, daemon.residentKiB ?? 0)
            }
            report.record([
                Figure(
                    name: "import \(Figure.format(accounts)) sellers into PostgreSQL", value: imported.seconds,
                    unit: " s", decimals: 1),
                Figure(
                    name: "start to READY=1, \(Figure.format(accounts)) sellers", value: startToReady.seconds,
                    unit: " s", decimals: 3, target: .atMost(2)),
                Figure(
                    name: "resident at READY, \(Figure.format(accounts)) sellers",
                    value: megabytes(kibibytes: residentKiB), unit: " MB", decimals: 1),
            ])
        }
    }
}

/// A database on the benchmark's server for one rig: a role of its own with
/// a password in a 0600 file, as an operator sets it up.
struct PostgresTarget {
    var url: String
    var passwordFile: String

    static func create(on server: PostgresServer, database: String, in directory: String) throws -> PostgresTarget {
        let role = "keeper_" + database
        let password = "bench-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try server.createRole(role, password: password)
        try server.createDatabase(database, owner: role)
        let passwordFile = directory + "/postgres_password"
        guard
            FileManager.default.createFile(
                atPath: passwordFile, contents: Data(password.utf8), attributes: [.posixPermissions: 0o600])
        else { throw POSIXError(.EACCES) }
        return PostgresTarget(url: server.url(user: role, database: database), passwordFile: passwordFile)
    }
}
