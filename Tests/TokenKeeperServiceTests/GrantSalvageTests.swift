import Foundation
import RefreshScheduler
import SQLiteStore
import Testing
import TokenKeeperCore
import TokenKeeperTesting
@testable import TokenKeeperService

@Suite struct GrantSalvageTests {
    @Test func unstoredGrantIsSavedPrivatelyInTheImportFormat() throws {
        let scratch = try ScratchDirectory()
        let grant = TokenGrant(
            sellerID: "", profile: SellerProfile(), accessToken: Secret("AT-salvage"), refreshToken: Secret("RT-salvage"),
            accessTokenLifetime: .seconds(3600), refreshTokenLifetime: .seconds(86_400),
            expireTime: ManualWallClock.start + .seconds(3600), refreshTokenValidTime: nil,
            receivedAt: ManualWallClock.start, requestID: "req-9")
        let path = try GrantSalvage.save(grant, sellerID: "9001", directory: scratch.path, now: ManualWallClock.start)

        #expect(path.hasPrefix(scratch.path + "/unstored-grant-9001-"))
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let line = try String(contentsOfFile: path, encoding: .utf8)
        let record = try #require(try ImportLineParser.parse(Substring(line.trimmingCharacters(in: .newlines)), number: 1))
        #expect(record.sellerID == "9001")
        #expect(record.refreshToken == Secret("RT-salvage"))
        #expect(record.accessToken == Secret("AT-salvage"))
        // A second save of the same moment never overwrites the first.
        let second = try GrantSalvage.save(grant, sellerID: "9001", directory: scratch.path, now: ManualWallClock.start)
        #expect(second != path)
        try? FileManager.default.removeItem(atPath: second)
    }
}
