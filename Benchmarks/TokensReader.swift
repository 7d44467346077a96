import Foundation
import SQLiteStore
import Synchronization
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#endif

/// A program reading tokens.db as docs/DATABASE.md tells one to: read-only,
/// one point lookup after another on random sellers, on a thread of its own.
/// Its busy timeout is 0, so any lock the daemon holds against readers shows
/// as an `SQLITE_BUSY` instead of a wait.
final class TokensReader: Sendable {
    struct Result {
        var lookups = 0
        var busy = 0
        /// Other errors, with the first one's text.
        var failures = 0
        var firstFailure: String?
        /// Every lookup's time, milliseconds, ascending.
        var milliseconds: [Double] = []

        func percentile(_ fraction: Double) -> Double? {
            guard !milliseconds.isEmpty else { return nil }
            return milliseconds[min(milliseconds.count - 1, Int(fraction * Double(milliseconds.count)))]
        }
    }

    static let lookup = "SELECT access_token, expire_time FROM tokens WHERE seller_id = ?"
    /// An unpaced reader would take one of the machine's two cores from the
    /// daemon, and the figures would show how the CPU was shared, not whether
    /// the daemon's locks keep readers waiting.
    static let pause: useconds_t = 500

    private let stopRequested = Atomic(false)
    private let outcome = Mutex<Result?>(nil)

    /// Starts reading `path` at once.
    init(path: String, sellers: Range<Int>) {
        let thread = Thread { [self] in
            let result = Self.read(path: path, sellers: sellers) { stopRequested.load(ordering: .relaxed) }
            outcome.withLock { $0 = result }
        }
        thread.start()
    }

    /// Stops the reader and hands over what it saw.
    func stop() async throws -> Result {
        stopRequested.store(true, ordering: .relaxed)
        while true {
            if let result = outcome.withLock({ $0 }) { return result }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private static func read(path: String, sellers: Range<Int>, until stop: () -> Bool) -> Result {
        var result = Result()
        func failed(_ error: any Error) {
            result.failures += 1
            if result.firstFailure == nil { result.firstFailure = "\(error)" }
        }
        let connection: SQLiteConnection
        do {
            connection = try SQLiteConnection(path: path, flags: [.readOnly, .noMutex])
            try connection.setBusyTimeout(.zero)
        } catch {
            failed(error)
            return result
        }
        while !stop() {
            let sellerID = Rig.sellerID(Int.random(in: sellers))
            let started = ContinuousClock.now
            do {
                _ = try connection.cachedStatement(lookup).firstRow([sellerID]) { $0.int64(1) }
                result.milliseconds.append((ContinuousClock.now - started).seconds * 1000)
            } catch let error as SQLiteError where error.isBusy {
                result.busy += 1
            } catch {
                failed(error)
            }
            result.lookups += 1
            usleep(pause)
        }
        result.milliseconds.sort()
        return result
    }
}
