import Foundation
import Logging
import Synchronization
import TokenKeeperCore

/// Counts each app's proxied calls per marketplace day (Beijing time,
/// UTC+8, when AliExpress's daily limits start again; Lazada's day is
/// counted the same) and refuses those past `proxy.app_daily_calls`, so
/// that the rest of the key's daily limit stays with refreshes.
///
/// The counts survive a restart in `proxy-daily-calls.json` in the storage
/// directory (written at most every few seconds and at a stop): a restart
/// must not hand the readers a second day's worth. Several nodes on one
/// PostgreSQL each count their own, against their share of the limit.
final class ProxyDailyCalls: Sendable {
    private struct State {
        var day: Int64
        var counts: [AppName: Int64] = [:]
        var dirty = false
        var savedAt: Timestamp?
    }

    static let fileName = "proxy-daily-calls.json"
    static let offset: Int64 = 8 * 3_600_000
    private static let saveInterval: Duration = .seconds(5)

    private let state: Mutex<State>
    private let path: String?
    private let limit: @Sendable (AppName) -> Double?
    private let logger: Logger

    /// - Parameters:
    ///   - directory: Where the counts are kept; nil: in memory only.
    ///   - limit: An app's limit on this node now (nil: none).
    init(
        directory: String?, now: Timestamp, limit: @escaping @Sendable (AppName) -> Double?,
        logger: Logger
    ) {
        path = directory.map { $0 + "/" + Self.fileName }
        self.limit = limit
        self.logger = logger
        var initial = State(day: Self.day(of: now))
        if let path, let data = FileManager.default.contents(atPath: path),
            let saved = try? JSONDecoder().decode(Saved.self, from: data), saved.day == initial.day
        {
            for (name, count) in saved.calls {
                if let app = AppName(rawValue: name) { initial.counts[app] = max(0, count) }
            }
        }
        state = Mutex(initial)
    }

    /// The marketplace day of `now`: days since 1970 in UTC+8.
    static func day(of now: Timestamp) -> Int64 {
        let shifted = now.millisecondsSince1970 + offset
        return shifted >= 0 ? shifted / 86_400_000 : (shifted - 86_399_999) / 86_400_000
    }

    /// Whether the day's limit leaves room for a call of `app` (nothing counted).
    func hasRoom(_ app: AppName, now: Timestamp) -> Bool {
        guard let limit = limit(app) else { return true }
        return state.withLock { state in
            state.day != Self.day(of: now) || Double(state.counts[app, default: 0]) < limit
        }
    }

    /// Counts one call of `app` if the day's limit allows it.
    func admit(_ app: AppName, now: Timestamp) -> Bool {
        let limit = limit(app)
        let (admitted, snapshot) = state.withLock { state -> (Bool, Saved?) in
            let today = Self.day(of: now)
            if today != state.day {
                state.day = today
                state.counts.removeAll()
            }
            let count = state.counts[app, default: 0]
            if let limit, Double(count) >= limit { return (false, nil) }
            state.counts[app] = count + 1
            state.dirty = true
            guard state.savedAt.map({ now - $0 >= Self.saveInterval || now < $0 }) ?? true else { return (true, nil) }
            state.savedAt = now
            state.dirty = false
            return (true, Saved(state))
        }
        if let snapshot { save(snapshot) }
        return admitted
    }

    /// Writes what is not yet written (at a stop).
    func flush() {
        let snapshot = state.withLock { state -> Saved? in
            guard state.dirty else { return nil }
            state.dirty = false
            return Saved(state)
        }
        if let snapshot { save(snapshot) }
    }

    private struct Saved: Codable {
        var day: Int64
        var calls: [String: Int64]

        init(_ state: State) {
            day = state.day
            calls = Dictionary(uniqueKeysWithValues: state.counts.map { ($0.key.rawValue, $0.value) })
        }
    }

    private func save(_ saved: Saved) {
        guard let path, let data = try? JSONEncoder().encode(saved) else { return }
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            logger.warning(
                "cannot save the proxy's daily call counts; a restart would count today's calls again",
                metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}
