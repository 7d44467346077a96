import IOPSimulator
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@Suite("Fault injection")
struct FaultTests {
    /// Sends one refresh that meets `kind`, checks the answer's shape, and
    /// returns whether the answer was what `kind` promises.
    private static func expectShape(of kind: FaultKind, in h: SimulatorHarness, token: Secret) async throws {
        switch kind {
        case .connectionReset:
            await #expect(throws: (any Error).self) { try await h.gateway.refresh(token) }
        case .slowResponse:
            // Held until released, so the test needs no real delay.
            async let pending = h.gateway.refresh(token)
            #expect(try await waitUntil { h.simulator.heldAnswerCount == 1 })
            h.simulator.releaseHeldAnswers()
            let answer = try await pending
            #expect(answer.status == 504)
            #expect(answer.contentType == "text/html")
        default:
            let answer = try await h.gateway.refresh(token)
            switch kind {
            case .http500, .http502, .http503:
                #expect(answer.status == ["http500": 500, "http502": 502, "http503": 503][kind.rawValue])
                #expect(answer.contentType == "text/html")
                #expect(answer.contains("<html>"))
            case .htmlPage:
                #expect(answer.status == 200)
                #expect(answer.contentType == "text/html")
                #expect(answer.hasPrefix("<!DOCTYPE html>"))
            case .throttled:
                #expect(answer.errorCode == "ApiCallLimit")
                #expect(answer.errorType == "ISP")
                #expect(answer.errorMessage?.contains("ban will last 1 seconds") == true)
            case .malformedJSON:
                #expect(answer.status == 200)
                #expect(answer.contentType?.hasPrefix("application/json") == true)
                #expect(answer.hasPrefix("{"))
                #expect(answer.object == nil)
            case .serviceTimeout:
                #expect(answer.errorCode == "ServiceTimeout")
                #expect(answer.errorType == "ISP")
            case .ispError:
                #expect(answer.errorCode == "InternalError")
                #expect(answer.errorType == "ISP")
            default:
                Issue.record("unexpected kind \(kind)")
            }
        }
    }

    @Test(arguments: FaultKind.withoutEffect)
    func aFaultWithoutEffectLeavesTheRefreshTokenUsable(kind: FaultKind) async throws {
        try await SimulatorHarness.run(configure: { $0.slowResponseDelay = .seconds(60) }) { h in
            let token = try h.enrolledSeller().refreshToken
            h.simulator.injectFaults(kind)
            try await Self.expectShape(of: kind, in: h, token: token)

            let counters = h.simulator.counters
            #expect(counters.faults(kind) == 1)
            #expect(counters.totalFaults == 1)
            #expect(counters.rotations == 0)
            // The same refresh token still rotates (after any ban has passed).
            h.clock.advance(by: .seconds(2))
            let retry = try await h.gateway.refresh(token)
            #expect(retry.isSuccess)
            #expect(h.simulator.counters.refreshTokenReuses == 0)
            #expect(h.simulator.counters.overlappingRefreshes == 0)
        }
    }

    @Test func aThrottleBanRefusesCallsUntilItEnds() async throws {
        try await SimulatorHarness.run(configure: { $0.throttleBanSeconds = 3 }) { h in
            let token = try h.enrolledSeller().refreshToken
            h.simulator.injectFaults(.throttled)
            let throttled = try await h.gateway.refresh(token)
            #expect(throttled.errorMessage?.contains("ban will last 3 seconds") == true)

            h.clock.advance(by: .seconds(2))
            let duringBan = try await h.gateway.refresh(token)
            #expect(duringBan.errorCode == "ApiCallLimit")
            #expect(duringBan.errorMessage?.contains("ban will last 1 seconds") == true)
            #expect(h.simulator.counters.callsDuringBan == 1)

            h.clock.advance(by: .seconds(1))
            #expect(try await h.gateway.refresh(token).isSuccess)
            #expect(h.simulator.counters.callsDuringBan == 1)
        }
    }

    @Test func resetAfterRotationLosesTheRotationAndTheRetryLooksLikeARevocation() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            h.simulator.injectFaults(.resetAfterRotation)
            await #expect(throws: (any Error).self) { try await h.gateway.refresh(token) }

            #expect(h.simulator.counters.rotations == 1)
            #expect(h.simulator.counters.faults(.resetAfterRotation) == 1)
            #expect(h.simulator.rotationsHandedOut(for: "1001").isEmpty)
            #expect(h.simulator.issuedTokens(for: "1001").last?.delivery == .lostByFault)

            let retry = try await h.gateway.refresh(token)
            #expect(retry.errorCode == "IllegalRefreshToken")
            let counters = h.simulator.counters
            #expect(counters.reusesAfterLostAnswer == 1)
            #expect(counters.refreshTokenReuses == 0)
        }
    }

    @Test func resetAfterRotationDoesNothingToAFailingRequest() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.injectFaults(.resetAfterRotation)
            let answer = try await h.gateway.refresh(Secret("unknown"))
            #expect(answer.errorCode == "IllegalRefreshToken")
            #expect(h.simulator.counters.faults(.resetAfterRotation) == 0)
        }
    }

    @Test func twoRefreshesOfOneSellerInFlightAtOnceAreCountedAsOverlapping() async throws {
        try await SimulatorHarness.run(configure: { $0.slowResponseDelay = .seconds(60) }) { h in
            let token = try h.enrolledSeller().refreshToken
            try h.enrolledSeller("1002")
            h.simulator.injectFaults(.slowResponse, count: 2)

            async let first = h.gateway.refresh(token)
            async let second = h.gateway.refresh(token)
            #expect(try await waitUntil { h.simulator.inFlightRefreshes(for: "1001") == 2 })
            #expect(h.simulator.counters.overlappingRefreshes == 1)
            #expect(h.simulator.sellerStats(for: "1001")?.overlappingRefreshes == 1)
            #expect(h.simulator.sellerStats(for: "1002")?.overlappingRefreshes == 0)

            h.simulator.releaseHeldAnswers()
            #expect(try await first.status == 504)
            #expect(try await second.status == 504)
            #expect(try await waitUntil { h.simulator.inFlightRefreshes(for: "1001") == 0 })
            // Slow answers consumed nothing.
            #expect(h.simulator.currentRefreshToken(for: "1001") == token)
        }
    }

    @Test func refreshesOfDifferentSellersDoNotOverlap() async throws {
        try await SimulatorHarness.run(configure: { $0.slowResponseDelay = .seconds(60) }) { h in
            let a = try h.enrolledSeller("1001").refreshToken
            let b = try h.enrolledSeller("1002").refreshToken
            h.simulator.injectFaults(.slowResponse, count: 2)
            async let first = h.gateway.refresh(a)
            async let second = h.gateway.refresh(b)
            #expect(try await waitUntil { h.simulator.heldAnswerCount == 2 })
            #expect(h.simulator.counters.overlappingRefreshes == 0)
            h.simulator.releaseHeldAnswers()
            _ = try await (first, second)
        }
    }

    @Test func aClientThatGivesUpDuringLatencyLosesTheRotation() async throws {
        try await SimulatorHarness.run(configure: { $0.responseLatency = .seconds(60) }) { h in
            let token = try h.enrolledSeller().refreshToken
            var impatient = h.gateway
            impatient.timeout = .milliseconds(200)
            await #expect(throws: (any Error).self) { try await impatient.refresh(token) }
            #expect(try await waitUntil { h.simulator.counters.answersNotDelivered == 1 })
            #expect(h.simulator.counters.rotations == 1)
            #expect(h.simulator.rotationsHandedOut(for: "1001").isEmpty)
            #expect(h.simulator.issuedTokens(for: "1001").last?.delivery == .notDelivered)
            #expect(h.simulator.inFlightRefreshes(for: "1001") == 0)
        }
    }

    @Test func latencyDelaysAnswersWithoutChangingThem() async throws {
        try await SimulatorHarness.run(configure: { $0.responseLatency = .seconds(60) }) { h in
            let token = try h.enrolledSeller().refreshToken
            async let answer = h.gateway.refresh(token)
            #expect(try await waitUntil { h.simulator.heldAnswerCount == 1 })
            #expect(h.simulator.inFlightRefreshes(for: "1001") == 1)
            h.simulator.releaseHeldAnswers()
            #expect(try await answer.isSuccess)
            #expect(h.simulator.rotationsHandedOut(for: "1001").count == 1)
        }
    }

    @Test func randomFaultsFollowTheSeed() async throws {
        func run(seed: UInt64) async throws -> [FaultKind: Int] {
            var faults: [FaultKind: Int] = [:]
            try await SimulatorHarness.run(
                seed: seed,
                configure: {
                    $0.faults = .uniform(
                        rate: 0.5, over: [.http500, .http503, .serviceTimeout, .ispError, .malformedJSON, .htmlPage])
                }
            ) { h in
                for _ in 0..<40 { _ = try await h.gateway.refresh(Secret("unknown")) }
                faults = h.simulator.counters.faults
            }
            return faults
        }
        let first = try await run(seed: 42)
        let again = try await run(seed: 42)
        #expect(first == again)
        let total = first.values.reduce(0, +)
        #expect(total > 5 && total < 35)
        #expect(first.keys.count > 2)
    }

    @Test func clearFaultsStopsScriptedAndRandomFaultsAndTheBan() async throws {
        try await SimulatorHarness.run(configure: { $0.faults = .uniform(rate: 1, over: [.http503]) }) { h in
            let token = try h.enrolledSeller().refreshToken
            #expect(try await h.gateway.refresh(token).status == 503)
            h.simulator.injectFaults(.throttled)
            #expect(try await h.gateway.refresh(token).errorCode == "ApiCallLimit")
            h.simulator.injectFaults(.http500, count: 3)
            h.simulator.clearFaults()
            #expect(try await h.gateway.refresh(token).isSuccess)
            #expect(h.simulator.behavior.faults == .none)
        }
    }

    @Test func uniformInjectionSpreadsTheRateOverTheKinds() {
        let injection = FaultInjection.uniform(rate: 0.3, over: [.http500, .throttled, .http500])
        #expect(injection.probabilities == [.http500: 0.15, .throttled: 0.15])
        #expect(!FaultKind.withoutEffect.contains(.resetAfterRotation))
        #expect(FaultKind.withoutEffect.count == FaultKind.allCases.count - 1)
    }
}
