import Foundation
import Logging
import SQLiteStore
import Synchronization
import Testing
import TokenKeeperCore
import TokenKeeperHTTP
import TokenKeeperTesting

@testable import TokenKeeperService

/// The callback's one route against a real store and a scripted gateway.
@Suite struct ReauthorizerTests {
    /// `/auth/token/create` answering from a script: code → grant or failure.
    final class ScriptedGateway: TokenGateway {
        let answers: Mutex<[String: Result<TokenGrant, GatewayFailure>]>
        let calls = Mutex(0)

        init(_ answers: [String: Result<TokenGrant, GatewayFailure>]) {
            self.answers = Mutex(answers)
        }

        func refresh(refreshToken: Secret) async throws(GatewayFailure) -> TokenGrant {
            throw GatewayFailure(.transient, code: "Unused", message: "not in this test")
        }

        func createToken(code: String) async throws(GatewayFailure) -> TokenGrant {
            calls.withLock { $0 += 1 }
            guard let answer = answers.withLock({ $0[code] }) else {
                throw GatewayFailure(.accountRejected, code: "InvalidCode", message: "unknown code")
            }
            return try answer.get()
        }
    }

    let scratch = try! ScratchDirectory()
    let clock = ManualWallClock()
    let signer = AuthorizationStateSigner(keyHex: AuthorizationStateSigner.makeKeyHex())

    func grant(_ seller: String) -> TokenGrant {
        TokenGrant(
            sellerID: seller, profile: SellerProfile(), accessToken: Secret("AT-\(UUID())"),
            refreshToken: Secret("RT-\(UUID())"), accessTokenLifetime: .seconds(3600),
            refreshTokenLifetime: .seconds(86_400 * 30), expireTime: clock.now() + .seconds(3600),
            refreshTokenValidTime: clock.now() + .seconds(86_400 * 30), receivedAt: clock.now(), requestID: "req")
    }

    func reauthorizer(_ store: SQLiteAccountStore, _ gateway: ScriptedGateway) -> Reauthorizer {
        Reauthorizer(
            store: store, gateway: gateway, signer: signer, stateTTL: .seconds(3600), policy: RefreshPolicy(),
            storageDirectory: scratch.path, clock: clock, logger: Logger(label: "test"))
    }

    func state(for seller: String) -> String {
        var random = SystemRandomNumberGenerator()
        return signer.encode(AuthorizationState.issue(for: .seller(seller), at: clock.now(), using: &random))
    }

    @Test func aCodeOfAnotherSellerIsStoredForTheSellerItBelongsTo() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        let gateway = ScriptedGateway(["code-b": .success(grant("2002"))])
        let reply = await reauthorizer(store, gateway).handle(["code": "code-b", "state": state(for: "1001")])
        #expect(reply.status == 200)
        #expect(reply.body.contains("seller 2002 is active again"))
        #expect(try await store.account("2002")?.status == .active)
        #expect(try await store.account("1001") == nil, "nothing stored under the state's seller")
        try await store.close()
    }

    @Test func aCodeOfAnotherSellerNeverReplacesThatSellersLiveTokens() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        let live = grant("2002")
        _ = try await store.enroll(grant: live, nextRefreshAt: clock.now(), now: clock.now())
        let gateway = ScriptedGateway(["code-b": .success(grant("2002")), "code-a": .success(grant("1001"))])
        let link = state(for: "1001")
        let reply = await reauthorizer(store, gateway).handle(["code": "code-b", "state": link])
        #expect(reply.status == 409, "\(reply.body)")
        #expect(try await store.account("2002")?.refreshToken == live.refreshToken, "the live token stays")
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: scratch.path).contains {
                $0.hasPrefix("unstored-grant-2002-")
            },
            "the unused grant is kept in a 0600 file all the same")
        let retried = await reauthorizer(store, gateway).handle(["code": "code-a", "state": link])
        #expect(retried.status == 200, "the same link works for the right seller: \(retried.body)")
        try await store.close()
    }

    @Test func aGatewayThatCannotBeReachedLeavesTheLinkUsable() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        let gateway = ScriptedGateway([
            "code-1": .failure(GatewayFailure(.transient, code: "HTTP503", message: "unavailable"))
        ])
        let link = state(for: "1001")
        let down = await reauthorizer(store, gateway).handle(["code": "code-1", "state": link])
        #expect(down.status == 502)
        gateway.answers.withLock { $0["code-2"] = .success(grant("1001")) }
        let again = await reauthorizer(store, gateway).handle(["code": "code-2", "state": link])
        #expect(again.status == 200, "\(again.body)")
        let replay = await reauthorizer(store, gateway).handle(["code": "code-2", "state": link])
        #expect(replay.status == 400 && replay.body.contains("already used"))
        #expect(gateway.calls.withLock { $0 } == 2, "a replay spends no code")
        try await store.close()
    }

    @Test func oneLinkCallsTheGatewayAFewTimesAtMost() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        let gateway = ScriptedGateway([:])  // every code refused
        let link = state(for: "1001")
        var statuses: [Int] = []
        for attempt in 0..<10 {
            statuses.append(
                await reauthorizer(store, gateway).handle(["code": "bad-\(attempt)", "state": link]).status)
        }
        #expect(gateway.calls.withLock { $0 } == Reauthorizer.maxReleases + 1, "\(statuses)")
        #expect(statuses.dropFirst(Reauthorizer.maxReleases + 1).allSatisfy { $0 == 400 })
        // A good code on the spent link is refused too, without a call.
        gateway.answers.withLock { $0["good"] = .success(grant("1001")) }
        let spent = await reauthorizer(store, gateway).handle(["code": "good", "state": link])
        #expect(spent.status == 400 && spent.body.contains("already used"), "\(spent.body)")
        #expect(gateway.calls.withLock { $0 } == Reauthorizer.maxReleases + 1)
        try await store.close()
    }

    @Test func codeExchangesKeepToTheirShareOfTheCallRate() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        let gateway = ScriptedGateway([:])
        var handler = reauthorizer(store, gateway)
        // 0.05 exchanges a second (a 5 % share of 1/s): the burst, then none.
        handler.budget = ExchangeBudget(rate: { 0.05 })
        var statuses: [Int] = []
        for seller in 0..<10 {
            statuses.append(await handler.handle(["code": "c", "state": state(for: "\(2000 + seller)")]).status)
        }
        #expect(gateway.calls.withLock { $0 } == Int(ExchangeBudget.burst), "\(statuses)")
        #expect(statuses.filter { $0 == 503 }.count == 10 - Int(ExchangeBudget.burst))
        try await store.close()
    }

    @Test func refusalsStoreNothingAndCallNoGateway() async throws {
        let store = try await SQLiteAccountStore.open(directory: scratch.path, clock: clock)
        let gateway = ScriptedGateway(["code": .success(grant("1001"))])
        let handler = reauthorizer(store, gateway)
        #expect(await handler.handle(["code": "code"]).status == 400)
        #expect(await handler.handle(["code": "code", "state": "forged.state"]).status == 400)
        #expect(await handler.handle(["state": state(for: "1001")]).status == 400, "no code")
        #expect(await handler.handle(["error": "access_denied", "state": state(for: "1001")]).status == 400)
        let old = state(for: "1001")
        clock.advance(by: .seconds(3601))
        let expired = await handler.handle(["code": "code", "state": old])
        #expect(expired.status == 400 && expired.body.contains("expired"))
        #expect(gateway.calls.withLock { $0 } == 0)
        #expect(try await store.allAccounts().isEmpty)
        try await store.close()
    }
}
