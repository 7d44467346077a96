import Foundation
import Logging
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps a grant that the store did not take, so that nothing the gateway
/// issued is lost: one JSON line in the import format, in a file of mode 0600
/// in the storage directory (never the temporary directory, which
/// `PrivateTmp=yes` empties at every stop), the directory fsynced.
///
/// A full disk is the usual reason a grant cannot be stored, so space is
/// reserved ahead of time: the daemon keeps a file of ``reserveSize`` bytes,
/// given up the moment a salvage finds no room.
///
/// At its next start the daemon stores every salvaged pair whose refresh
/// token replaces the one still stored (``recover(into:directory:now:logger:)``);
/// the others (the stored token changed meanwhile) wait for the operator:
/// `tokenkeeper import --replace --file F`.
enum GrantSalvage {
    static let reserveName = "salvage.reserve"
    static let reserveSize = 1 << 20
    static let filePrefix = "unstored-grant-"

    /// Writes the grant and returns the file's path.
    ///
    /// - Parameters:
    ///   - replacing: The refresh token the grant replaces (the one sent),
    ///     kept as a fingerprint only: a restart stores the pair if that one
    ///     is still stored.
    static func save(
        _ grant: TokenGrant, account: AccountKey, replacing: Secret?, directory: String, now: Timestamp
    ) throws -> String {
        let sellerID = account.sellerID
        var object: [String: Any] = [
            "app": account.app.rawValue, "seller_id": sellerID, "received_at": grant.receivedAt.millisecondsSince1970,
        ]
        if let refreshToken = grant.refreshToken { object["refresh_token"] = refreshToken.exposedValue }
        if let accessToken = grant.accessToken {
            object["access_token"] = accessToken.exposedValue
            object["expire_time"] = grant.expireTime.millisecondsSince1970
            object["expires_in"] = grant.accessTokenLifetime.wholeMilliseconds / 1000
        }
        if let validTime = grant.refreshTokenValidTime {
            object["refresh_token_valid_time"] = validTime.millisecondsSince1970
        }
        if grant.isFinalGrant { object["refresh_expires_in"] = 0 }
        if let requestID = grant.requestID { object["request_id"] = requestID }
        if let replacing { object["replaces"] = replacing.fingerprint }
        var line = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        line.append(UInt8(ascii: "\n"))
        let safeSeller = String(sellerID.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
        let path = (directory as NSString).appendingPathComponent(
            "\(filePrefix)\(safeSeller)-\(now.millisecondsSince1970)-\(UInt32.random(in: 0...UInt32.max)).jsonl")
        do {
            try write(line, to: path)
        } catch let error as POSIXError where error.code == .ENOSPC || error.code == .EDQUOT {
            // The room kept for this moment.
            unlink((directory as NSString).appendingPathComponent(reserveName))
            try write(line, to: path)
        }
        try syncDirectory(directory)
        return path
    }

    /// Saves a rotated pair the store did not take and logs where, with the
    /// command that stores it, or that it is lost.
    static func saveReporting(
        _ grant: TokenGrant, account: AccountKey, replacing: Secret?, directory: String, logger: Logger
    ) {
        do {
            let path = try save(
                grant, account: account, replacing: replacing, directory: directory, now: SystemWallClock().now())
            logger.critical(
                "a rotated pair the store did not take was saved to a file; the next start stores it if it still applies",
                metadata: [
                    "seller": "\(account)", "file": "\(path)",
                    "command": "tokenkeeper import --replace --file \(path)",
                ])
        } catch {
            logger.critical(
                "a rotated pair could be neither stored nor saved to a file: this seller must authorize again",
                metadata: ["seller": "\(account)", "error": "\(error)"])
        }
    }

    /// Keeps ``reserveSize`` bytes in the storage directory for salvage
    /// (allocated, not sparse), unless they are already kept. Best effort:
    /// a full disk now is reported, and salvage then tries without it.
    static func reserveSpace(directory: String, logger: Logger) {
        let path = (directory as NSString).appendingPathComponent(reserveName)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        if let size, size >= reserveSize { return }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            logger.warning(
                "no space could be reserved for saving rotated pairs",
                metadata: ["file": "\(path)", "error": "\(String(cString: strerror(errno)))"])
            return
        }
        defer { close(descriptor) }
        let result = posix_fallocate(descriptor, 0, off_t(reserveSize))
        guard result == 0, fsync(descriptor) == 0 else {
            ftruncate(descriptor, 0)
            logger.warning(
                "no space could be reserved for saving rotated pairs",
                metadata: ["file": "\(path)", "error": "\(String(cString: strerror(result == 0 ? errno : result)))"])
            return
        }
        try? syncDirectory(directory)
    }

    /// Stores the salvaged pairs that still apply: those whose seller still
    /// holds the refresh token they replace (fenced by `commitRotation`, so
    /// a pair is never stored over a newer token). A stored pair's file is
    /// deleted; one that no longer applies stays for the operator, with a
    /// warning. Returns how many were stored.
    @discardableResult
    static func recover(into store: any ManagedAccountStore, directory: String, now: Timestamp, logger: Logger) async
        -> Int
    {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix(filePrefix) && $0.hasSuffix(".jsonl") }.sorted()
        var stored = 0
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                guard let data = FileManager.default.contents(atPath: path),
                    let line = String(data: data, encoding: .utf8)?.split(separator: "\n").first,
                    let record = try ImportLineParser.parse(line, number: 1),
                    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                else { continue }
                let account = try await store.account(record.key)
                guard let account, let replaces = object["replaces"] as? String,
                    account.refreshToken.fingerprint == replaces
                else {
                    logger.warning(
                        """
                        a saved rotated pair does not replace the refresh token stored now (the seller was \
                        re-authorized, imported or removed since); it is left for the operator
                        """,
                        metadata: [
                            "seller": "\(record.key)", "file": "\(path)",
                            "command": "tokenkeeper import --replace --file \(path)",
                        ])
                    continue
                }
                let grant = TokenGrant(
                    sellerID: record.sellerID, profile: SellerProfile(), accessToken: record.accessToken,
                    refreshToken: record.refreshToken, accessTokenLifetime: record.accessTokenLifetime ?? .zero,
                    refreshTokenLifetime: (object["refresh_expires_in"] as? NSNumber).map { .seconds($0.int64Value) },
                    expireTime: record.expireTime ?? now, refreshTokenValidTime: record.refreshTokenValidTime,
                    receivedAt: (object["received_at"] as? NSNumber).map {
                        Timestamp(millisecondsSince1970: $0.int64Value)
                    } ?? now,
                    requestID: object["request_id"] as? String)
                // Due at once: the scheduler refreshes it from the pair now stored.
                if try await store.commitRotation(
                    account: record.key, sent: account.refreshToken, grant: grant, nextRefreshAt: now, now: now)
                {
                    unlink(path)
                    stored += 1
                    logger.notice(
                        "a saved rotated pair was stored",
                        metadata: ["seller": "\(record.key)", "file": "\(path)"])
                }
            } catch {
                logger.error(
                    "a saved rotated pair could not be read or stored; it is left for the operator",
                    metadata: ["file": "\(path)", "error": "\(error)"])
            }
        }
        if stored > 0 { try? syncDirectory(directory) }
        return stored
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

    /// fsyncs a directory, so that a file created or removed in it survives
    /// a crash.
    static func syncDirectory(_ directory: String) throws {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}
