import Foundation
import Logging
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
            sellerID: "", profile: SellerProfile(), accessToken: Secret("AT-salvage"),
            refreshToken: Secret("RT-salvage"),
            accessTokenLifetime: .seconds(3600), refreshTokenLifetime: .seconds(86_400),
            expireTime: ManualWallClock.start + .seconds(3600), refreshTokenValidTime: nil,
            receivedAt: ManualWallClock.start, requestID: "req-9")
        let path = try GrantSalvage.save(
            grant, account: AccountKey(app: "lazada_sg", sellerID: "9001"), replacing: Secret("RT-before"),
            directory: scratch.path, now: ManualWallClock.start)

        #expect(path.hasPrefix(scratch.path + "/unstored-grant-9001-"))
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let line = try String(contentsOfFile: path, encoding: .utf8)
        let record = try #require(
            try ImportLineParser.parse(Substring(line.trimmingCharacters(in: .newlines)), number: 1))
        #expect(record.key == AccountKey(app: "lazada_sg", sellerID: "9001"), "the app comes back with the seller")
        #expect(record.refreshToken == Secret("RT-salvage"))
        #expect(record.accessToken == Secret("AT-salvage"))
        // A second save of the same moment never overwrites the first.
        let second = try GrantSalvage.save(
            grant, account: "9001", replacing: Secret("RT-before"), directory: scratch.path, now: ManualWallClock.start
        )
        #expect(second != path)
        try? FileManager.default.removeItem(atPath: second)
    }

    // Case 6: space is reserved ahead of time, so that a full disk still
    // takes a salvaged pair.
    @Test(.enabled(if: getuid() == 0, "mounts a small tmpfs: needs root"))
    func aFullDiskStillTakesASalvagedPairFromTheReservedSpace() throws {
        let scratch = try ScratchDirectory()
        let mountPoint = scratch.path + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
        guard run(["/bin/mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint]) == 0 else {
            Issue.record("mounting a tmpfs failed")
            return
        }
        defer { _ = run(["/bin/umount", mountPoint]) }
        GrantSalvage.reserveSpace(directory: mountPoint, logger: LogRecorder().logger())
        // Fill what is left.
        let filler = open(mountPoint + "/filler", O_WRONLY | O_CREAT, 0o600)
        let block = [UInt8](repeating: 7, count: 64 * 1024)
        while block.withUnsafeBytes({ write(filler, $0.baseAddress, $0.count) }) > 0 {}
        close(filler)
        let grant = TokenGrant(
            sellerID: "9002", profile: SellerProfile(), accessToken: Secret("AT-full"), refreshToken: Secret("RT-full"),
            accessTokenLifetime: .seconds(3600), refreshTokenLifetime: .seconds(86_400),
            expireTime: ManualWallClock.start + .seconds(3600), refreshTokenValidTime: nil,
            receivedAt: ManualWallClock.start, requestID: "req-full")

        let path = try GrantSalvage.save(
            grant, account: "9002", replacing: Secret("RT-before"), directory: mountPoint, now: ManualWallClock.start)

        let line = try String(contentsOfFile: path, encoding: .utf8)
        let record = try #require(
            try ImportLineParser.parse(Substring(line.trimmingCharacters(in: .newlines)), number: 1))
        #expect(record.refreshToken == Secret("RT-full"))
        #expect(!FileManager.default.fileExists(atPath: mountPoint + "/" + GrantSalvage.reserveName))
    }

    private func run(_ command: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        do {
            try process.run()
        } catch {
            return -1
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
