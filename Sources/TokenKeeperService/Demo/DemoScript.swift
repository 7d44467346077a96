import IOPSimulator
import SQLiteStore
import ServiceLifecycle

/// Revokes one seller's refresh token after a while, prints the next
/// deadlines every ten seconds, and ends the demo after its duration.
struct DemoScript: Service {
    let simulator: IOPSimulator
    let victim: String
    let duration: Duration?
    let narrator: DemoNarrator
    var store: SQLiteAccountStore?

    func withStore(_ store: SQLiteAccountStore) -> DemoScript {
        var copy = self
        copy.store = store
        return copy
    }

    func run() async throws {
        let start = ContinuousClock.now
        var revoked = false
        var nextListing = start + .seconds(10)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let elapsed = ContinuousClock.now - start
            if let duration, elapsed >= duration { return }
            if !revoked, elapsed >= DemoRun.revokeAfter {
                revoked = true
                do {
                    try simulator.revoke(sellerID: victim)
                    narrator.say("simulator: revoked the refresh token of seller \(victim)")
                } catch {
                    narrator.say("simulator: could not revoke \(victim): \(error)")
                }
            }
            if ContinuousClock.now >= nextListing, let store {
                nextListing = nextListing + .seconds(10)
                let accounts = (try? await store.allAccounts()) ?? []
                narrator.deadlines(accounts)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }
}
