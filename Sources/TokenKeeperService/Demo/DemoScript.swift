import AsyncHTTPClient
import Foundation
import IOPSimulator
import NIOCore
import NIOHTTP1
import SQLiteStore
import ServiceLifecycle
import TokenKeeperCore

/// Revokes one seller's refresh token after a while, then closes the loop as
/// an operator would see it: the `reauth_required` event with the link it
/// carries, the seller's click through the simulator's authorization page to
/// the daemon's callback, and the seller active again. Prints the next
/// deadlines every ten seconds and ends the demo after its duration.
struct DemoScript: Service {
    let simulator: IOPSimulator
    let victim: AccountKey
    let duration: Duration?
    let narrator: DemoNarrator
    let configuration: TokenKeeperConfiguration
    var store: (any OperatorStore)?

    func withStore(_ store: any OperatorStore) -> DemoScript {
        var copy = self
        copy.store = store
        return copy
    }

    func run() async throws {
        let start = ContinuousClock.now
        var revoked = false
        var loopClosed = false
        var nextListing = start + .seconds(10)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let elapsed = ContinuousClock.now - start
            if let duration, elapsed >= duration { return }
            if !revoked, elapsed >= DemoRun.revokeAfter {
                revoked = true
                do {
                    try simulator.revoke(sellerID: victim.sellerID)
                    narrator.say("simulator: revoked the refresh token of seller \(victim.sellerID)")
                } catch {
                    narrator.say("simulator: could not revoke \(victim.sellerID): \(error)")
                }
            }
            if revoked, !loopClosed, let store, elapsed >= DemoRun.revokeAfter + DemoRun.clickDelay {
                loopClosed = await closeTheLoop(store: store)
            }
            if ContinuousClock.now >= nextListing, let store {
                nextListing = nextListing + .seconds(10)
                let accounts = (try? await store.allAccounts()) ?? []
                narrator.deadlines(accounts)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Once the victim's `reauth_required` event is stored: shows it as the
    /// hook and the webhook receive it, follows its link as the seller's
    /// browser would, and reports the outcome. False while there is no event yet.
    private func closeTheLoop(store: any OperatorStore) async -> Bool {
        let now = SystemWallClock().now()
        guard
            let event = try? await store.events(
                EventQuery(app: victim.app, sellerID: victim.sellerID, kind: .reauthRequired, limit: 1)
            ).first,
            let links = try? await AuthorizationLinks.load(store: store, configuration: configuration, now: now),
            let link = links.url(for: victim, now: now)
        else { return false }
        let account = try? await store.account(victim)
        let uid = (try? await store.outboxUID(eventID: event.id)) ?? nil
        narrator.say("")
        narrator.say("event (what notify.command and notify.webhook_url receive):")
        narrator.say(
            "  "
                + EventPayload.render(
                    event, uid: uid ?? "-", reauthBy: account?.refreshTokenValidTime, authorizeURL: link))
        narrator.say(
            "the seller is sent this link (signed, single use, valid \(Int(configuration.callback.stateTTLHours)) h):")
        narrator.say("  " + link)
        simulator.updateBehavior { $0.loggedInSeller = victim.sellerID }
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        defer { _ = client.shutdown() }
        do {
            let page = try await client.execute(HTTPClientRequest(url: link), timeout: .seconds(10))
            _ = try await page.body.collect(upTo: 1 << 16)
            guard page.status.code == 302, let callback = page.headers.first(name: "location") else {
                narrator.say("simulator: the authorization page answered HTTP \(page.status.code)")
                return true
            }
            let shown = callback.split(separator: "?").first.map(String.init) ?? callback
            narrator.say(
                "simulated click: seller \(victim.sellerID) logs in; the marketplace sends the browser to \(shown)?code=…&state=…"
            )
            let landing = try await client.execute(HTTPClientRequest(url: callback), timeout: .seconds(30))
            let text = String(buffer: try await landing.body.collect(upTo: 1 << 16))
            narrator.say(
                "callback answered HTTP \(landing.status.code): \(text.trimmingCharacters(in: .whitespacesAndNewlines))"
            )
        } catch {
            narrator.say("the simulated click failed: \(error)")
        }
        if let status = try? await store.account(victim)?.status {
            narrator.say("seller \(victim.sellerID) is now \(status.rawValue); no command was typed")
        }
        if let reactivated = try? await store.events(
            EventQuery(app: victim.app, sellerID: victim.sellerID, kind: .reactivated, limit: 1)
        ).first {
            let uid = (try? await store.outboxUID(eventID: reactivated.id)) ?? nil
            narrator.say(
                "event: " + EventPayload.render(reactivated, uid: uid ?? "-", reauthBy: nil, authorizeURL: nil))
        }
        narrator.say("")
        return true
    }
}
