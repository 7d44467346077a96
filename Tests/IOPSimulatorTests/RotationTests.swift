import IOPSimulator
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@Suite("/auth/token/refresh: rotation and validity")
struct RotationTests {
    @Test func aRefreshRotatesBothTokens() async throws {
        try await SimulatorHarness.run { h in
            let seeded = try h.enrolledSeller()
            h.clock.advance(by: .seconds(30))
            let answer = try await h.gateway.refresh(seeded.refreshToken)

            #expect(answer.isSuccess)
            #expect(answer.accessToken != nil && answer.accessToken != seeded.accessToken)
            #expect(answer.refreshToken != nil && answer.refreshToken != seeded.refreshToken)
            #expect(answer.integer("expire_time") == h.clock.now().millisecondsSince1970 + 600_000)
            #expect(h.simulator.currentRefreshToken(for: "1001") == answer.refreshToken)
            #expect(h.simulator.counters.rotations == 1)
            let handedOut = h.simulator.rotationsHandedOut(for: "1001")
            #expect(handedOut.map(\.refreshToken) == [answer.refreshToken!])
            #expect(handedOut.first?.requestID == answer.string("request_id"))
        }
    }

    @Test func theOldRefreshTokenDiesOnUseAndItsReuseIsCounted() async throws {
        try await SimulatorHarness.run { h in
            let seeded = try h.enrolledSeller()
            let first = try await h.gateway.refresh(seeded.refreshToken)
            let reuse = try await h.gateway.refresh(seeded.refreshToken)

            #expect(first.isSuccess)
            #expect(reuse.errorCode == "IllegalRefreshToken")
            #expect(reuse.errorType == "ISV")
            #expect(reuse.status == 200)
            let counters = h.simulator.counters
            #expect(counters.refreshTokenReuses == 1)
            #expect(counters.rotations == 1)
            #expect(counters.rejections("IllegalRefreshToken") == 1)
            #expect(h.simulator.sellerStats(for: "1001")?.refreshTokenReuses == 1)
            // The failed reuse does not kill the pair handed out by the rotation.
            #expect(try await h.gateway.refresh(first.refreshToken!).isSuccess)
        }
    }

    @Test func aRefreshDoesNotExtendTheRefreshValidity() async throws {
        try await SimulatorHarness.run { h in
            var token = try h.enrolledSeller().refreshToken
            let validTime = ManualWallClock.start.millisecondsSince1970 + 3_600_000
            for step in 1...3 {
                h.clock.advance(by: .seconds(500))
                let answer = try await h.gateway.refresh(token)
                #expect(answer.integer("refresh_token_valid_time") == validTime)
                #expect(answer.integer("refresh_expires_in") == Int64(3600 - 500 * step))
                token = try #require(answer.refreshToken)
            }
        }
    }

    @Test func aRefreshAfterTheValidityEndsIsIllegal() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            h.clock.advance(by: .seconds(3600))
            let answer = try await h.gateway.refresh(token)
            #expect(answer.errorCode == "IllegalRefreshToken")
            #expect(h.simulator.counters.refreshTokenReuses == 0)
            #expect(h.simulator.sellerStats(for: "1001")?.rejectedRefreshes == 1)
        }
    }

    @Test func theLastRefreshBeforeTheValidityEndsSaysRefreshExpiresInZero() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            h.clock.advance(by: .milliseconds(3_599_500))
            let answer = try await h.gateway.refresh(token)
            #expect(answer.isSuccess)
            #expect(answer.integer("refresh_expires_in") == 0)
        }
    }

    @Test func aRevokedSellersRefreshTokenIsIllegalAndNotAReuse() async throws {
        try await SimulatorHarness.run { h in
            let token = try h.enrolledSeller().refreshToken
            try h.enrolledSeller("1002")
            try h.simulator.revoke(sellerID: "1001")
            #expect(h.simulator.currentRefreshToken(for: "1001") == nil)
            #expect(h.simulator.currentRefreshToken(for: "1002") != nil)

            let answer = try await h.gateway.refresh(token)
            #expect(answer.errorCode == "IllegalRefreshToken")
            #expect(h.simulator.counters.refreshTokenReuses == 0)
            #expect(h.simulator.sellerStats(for: "1001")?.refreshRequests == 1)
        }
    }

    @Test func anUnknownRefreshTokenIsIllegal() async throws {
        try await SimulatorHarness.run { h in
            let answer = try await h.gateway.refresh(Secret("50001nothing"))
            #expect(answer.errorCode == "IllegalRefreshToken")
        }
    }

    @Test func lifetimesCanBeSetPerSeller() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(
                sellerID: "short", accessTokenLifetime: .seconds(20), refreshTokenValidity: .seconds(90))
            let seeded = try h.simulator.seedTokens(for: "short")
            #expect(seeded.accessTokenLifetime == .seconds(20))
            #expect(seeded.refreshTokenValidTime == ManualWallClock.start + .seconds(90))
            let answer = try await h.gateway.refresh(seeded.refreshToken)
            #expect(answer.integer("expires_in") == 20)
            #expect(answer.integer("refresh_expires_in") == 90)

            try h.simulator.setLifetimes(for: "short", accessToken: .seconds(40), refreshTokenValidity: nil)
            let next = try await h.gateway.refresh(try #require(answer.refreshToken))
            #expect(next.integer("expires_in") == 40)
            // A validity already running keeps its end.
            #expect(next.integer("refresh_expires_in") == 90)
        }
    }

    @Test func seededTokensCanStartInThePast() async throws {
        try await SimulatorHarness.run { h in
            h.simulator.addSeller(sellerID: "1001")
            let seeded = try h.simulator.seedTokens(for: "1001", issuedAt: ManualWallClock.start - .seconds(700))
            #expect(seeded.origin == .seed)
            #expect(seeded.expireTime < h.clock.now())
            #expect(
                h.simulator.accessTokenStatus(seeded.accessToken)
                    == .expired(sellerID: "1001", expireTime: seeded.expireTime))
            // The refresh token still has 3600 − 700 seconds.
            let answer = try await h.gateway.refresh(seeded.refreshToken)
            #expect(answer.integer("refresh_expires_in") == 2900)
        }
    }

    @Test func accessTokensAreValidUntilTheirExpiryInTheGatewaysClock() async throws {
        try await SimulatorHarness.run { h in
            let seeded = try h.enrolledSeller()
            #expect(h.simulator.accessTokenStatus(seeded.accessToken).isValid)
            h.clock.advance(by: .seconds(600))
            #expect(!h.simulator.accessTokenStatus(seeded.accessToken).isValid)
            #expect(h.simulator.accessTokenStatus("never-issued") == .unknown)
        }
    }

    @Test func sequentialRefreshesNeverCountAsOverlapping() async throws {
        try await SimulatorHarness.run { h in
            var token = try h.enrolledSeller().refreshToken
            for _ in 0..<5 {
                token = try #require(try await h.gateway.refresh(token).refreshToken)
            }
            let counters = h.simulator.counters
            #expect(counters.rotations == 5)
            #expect(counters.overlappingRefreshes == 0)
            #expect(counters.refreshTokenReuses == 0)
            #expect(h.simulator.rotationsHandedOut(for: "1001").count == 5)
            #expect(h.simulator.rotationsHandedOut(for: "1001").last?.refreshToken == token)
        }
    }

    @Test func theIssuedTokenLogCanBeTurnedOff() async throws {
        try await SimulatorHarness.run(configure: { $0.recordsIssuedTokens = false }) { h in
            let token = try h.enrolledSeller().refreshToken
            #expect(try await h.gateway.refresh(token).isSuccess)
            #expect(h.simulator.issuedTokens(for: "1001").isEmpty)
            #expect(h.simulator.counters.rotations == 1)
        }
    }
}
