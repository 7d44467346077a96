import IOPGateway
import Synchronization
import TokenKeeperCore

/// The daemon's gateway clients, one per app (its key, secret and gateway),
/// which a reload updates, adds and removes.
final class GatewayClients: Sendable {
    private let clients: Mutex<[AppName: IOPGatewayClient]>
    /// Clients of apps a reload removed: shut down with the rest at the end,
    /// since a call of theirs may still be under way.
    private let retired = Mutex<[IOPGatewayClient]>([])

    init(_ clients: [AppName: IOPGatewayClient]) {
        self.clients = Mutex(clients)
    }

    var apps: Set<AppName> { clients.withLock { Set($0.keys) } }

    func client(for app: AppName) -> IOPGatewayClient? {
        clients.withLock { $0[app] }
    }

    /// Each app's client, timed for the latency histogram (labelled by app).
    func instrumented(metrics: DaemonMetrics) -> [AppName: any TokenGateway] {
        clients.withLock { clients in
            clients.reduce(into: [:]) { all, entry in
                all[entry.key] = InstrumentedGateway(gateway: entry.value, metrics: metrics, app: entry.key)
            }
        }
    }

    /// Takes a reload's settings: an app's existing client gets them, a new
    /// app gets a client, a removed app's client is retired.
    func update(_ settings: [AppName: GatewayConfiguration], make: (GatewayConfiguration) -> IOPGatewayClient) {
        clients.withLock { clients in
            for (app, configuration) in settings {
                if let client = clients[app] {
                    client.update(configuration: configuration)
                } else {
                    clients[app] = make(configuration)
                }
            }
            for app in clients.keys where settings[app] == nil {
                if let client = clients.removeValue(forKey: app) {
                    retired.withLock { $0.append(client) }
                }
            }
        }
    }

    func shutdown() async {
        let all = clients.withLock { Array($0.values) } + retired.withLock { $0 }
        for client in all { await client.shutdown() }
    }
}
