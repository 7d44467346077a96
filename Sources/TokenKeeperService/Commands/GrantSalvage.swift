#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import TokenKeeperCore

/// Keeps a grant that the store could not take, so that nothing the gateway
/// issued is lost: one JSON line in the import format, in a file of mode 0600
/// beside the store (or in the temporary directory when the store's directory
/// cannot be written), for `tokenkeeper import --replace --file F`.
enum GrantSalvage {
    /// Writes the grant and returns the file's path.
    static func save(_ grant: TokenGrant, sellerID: String, directory: String, now: Timestamp) throws -> String {
        var object: [String: Any] = ["seller_id": sellerID]
        if let refreshToken = grant.refreshToken { object["refresh_token"] = refreshToken.exposedValue }
        if let accessToken = grant.accessToken {
            object["access_token"] = accessToken.exposedValue
            object["expire_time"] = grant.expireTime.millisecondsSince1970
        }
        if let validTime = grant.refreshTokenValidTime { object["refresh_token_valid_time"] = validTime.millisecondsSince1970 }
        if let requestID = grant.requestID { object["request_id"] = requestID }
        var line = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        line.append(UInt8(ascii: "\n"))
        let safeSeller = String(sellerID.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
        let name = "unstored-grant-\(safeSeller)-\(now.millisecondsSince1970).jsonl"
        var lastError: (any Error)?
        for folder in [directory, FileManager.default.temporaryDirectory.path] {
            let path = (folder as NSString).appendingPathComponent(name)
            do {
                try write(line, to: path)
                return path
            } catch {
                lastError = error
            }
        }
        throw lastError ?? CocoaError(.fileWriteUnknown)
    }

    /// Saves a rotated pair the store never took (at a stop) and logs where,
    /// with the command that stores it, or that it is lost.
    static func saveReporting(_ grant: TokenGrant, sellerID: String, directory: String, logger: Logger) {
        do {
            let path = try save(grant, sellerID: sellerID, directory: directory, now: SystemWallClock().now())
            logger.critical(
                "a rotated pair the store could not take was saved to a file: import it once the store works again",
                metadata: ["seller": "\(sellerID)", "file": "\(path)",
                           "command": "tokenkeeper import --replace --file \(path)"])
        } catch {
            logger.critical(
                "a rotated pair could be neither stored nor saved to a file: this seller must authorize again",
                metadata: ["seller": "\(sellerID)", "error": "\(error)"])
        }
    }

    /// Creates the file exclusively with mode 0600 and fsyncs it: it holds a
    /// refresh token that exists nowhere else.
    private static func write(_ data: Data, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        let written = data.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(descriptor) == 0 else {
            let code = POSIXErrorCode(rawValue: errno) ?? .EIO
            unlink(path)
            throw POSIXError(code)
        }
    }
}
