import Foundation
import Logging
import PostgresStore
import SQLiteStore
import TokenKeeperCore

extension Commands {
    /// `tokenkeeper events [--seller S] [--since T] [--kind K] [--limit N] [--json]`:
    /// the audit trail, oldest first among the newest `limit`.
    public static func events(
        sellerID: String?, app appText: String? = nil, since: String?, kind: String?, limit: Int, json: Bool,
        configPath: String?
    ) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let app = try AccountResolution.appName(appText)
            let now = context.wallClock.now()
            if let kind, !EventKind.all.contains(EventKind(rawValue: kind)) {
                throw CommandFailure(
                    .usage,
                    "--kind '\(kind)' is no event kind; one of: \(EventKind.all.map(\.rawValue).joined(separator: ", "))"
                )
            }
            var query = EventQuery(
                app: app, sellerID: sellerID, kind: kind.map(EventKind.init(rawValue:)), limit: limit)
            if let since {
                guard let start = TimeArgument.parse(since, now: now) else {
                    throw CommandFailure(
                        .usage,
                        "--since '\(since)' is not a time: give an ISO 8601 time (2026-12-01T08:00:00Z), a date "
                            + "(2026-12-01), or an age such as 30m, 6h, 2d")
                }
                query.since = start
            }
            guard limit > 0 else { throw CommandFailure(.usage, "--limit must be at least 1") }
            let found: [StoredEvent]
            if context.configuredStoreExists {
                found = try await context.withAnyStore { store throws(CommandFailure) in
                    try await storeCall("reading events") { try await store.events(query) }
                }
            } else {
                found = []
            }
            let events = Array(found.reversed())
            if json {
                for event in events { Console.out(EventListing.jsonLine(event)) }
            } else if events.isEmpty {
                Console.out("no events match")
            } else {
                for event in events { Console.out(EventListing.line(event)) }
            }
            return .success
        }
    }

    /// `tokenkeeper backup DEST`: an online copy of keeper.db, mode 0600.
    public static func backup(destination: String, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let opened = try await context.openConfiguredStore(.command())
            let outcome: Result<String, CommandFailure>
            do throws(CommandFailure) {
                outcome = .success(try await opened.backup(destination))
            } catch {
                outcome = .failure(error)
            }
            await opened.close()
            let result = try outcome.get()
            guard result == "ok" else {
                Console.error("the copy at \(destination) fails its integrity check: \(result)")
                return .failure
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: destination)[.size] as? Int) ?? 0
            Console.out(
                "keeper.db copied to \(destination) (\(size) bytes, mode 0600, integrity ok). It holds every "
                    + "refresh token: keep it as safe as keeper.db. Restore: stop the daemon, copy it over keeper.db, "
                    + "start the daemon (tokens.db is rebuilt from it).")
            return .success
        }
    }
}

/// `--since` values: ISO 8601 times and dates, epoch milliseconds, or ages (`30m`, `6h`, `2d`).
enum TimeArgument {
    static func parse(_ text: String, now: Timestamp) -> Timestamp? {
        let text = text.trimmingCharacters(in: .whitespaces)
        if let unit = text.last, let amount = Double(text.dropLast()), amount >= 0 {
            let seconds: Double? =
                switch unit {
                case "s": amount
                case "m": amount * 60
                case "h": amount * 3600
                case "d": amount * 86_400
                default: nil
                }
            if let seconds { return now - .milliseconds(Int64(seconds * 1000)) }
        }
        if let milliseconds = Int64(text), text.count >= 12 { return Timestamp(millisecondsSince1970: milliseconds) }
        let full = ISO8601DateFormatter()
        full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        for formatter in [full, plain, day] {
            if let date = formatter.date(from: text) {
                return Timestamp(millisecondsSince1970: Int64((date.timeIntervalSince1970 * 1000).rounded()))
            }
        }
        return nil
    }
}

/// How `events` and `status` show events.
enum EventListing {
    static func line(_ event: StoredEvent) -> String {
        var text =
            "\(event.at)  \(event.kind.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0))"
            + "  \(event.account?.description ?? event.app.map { "app \($0)" } ?? "-")"
        if let detail = event.detail { text += "  \(detail)" }
        if let requestID = event.requestID { text += "  (request \(requestID))" }
        if let node = event.node { text += "  (node \(node))" }
        return text
    }

    static func object(_ event: StoredEvent) -> [String: Any] {
        var object: [String: Any] = [
            "id": event.id, "at": event.at.millisecondsSince1970, "kind": event.kind.rawValue,
            "app": event.app?.rawValue ?? NSNull(), "seller_id": event.sellerID ?? NSNull(),
            "detail": event.detail ?? NSNull(),
            "request_id": event.requestID ?? NSNull(),
        ]
        if let node = event.node { object["node"] = node }
        return object
    }

    static func jsonLine(_ event: StoredEvent) -> String {
        JSONText.encode(object(event), pretty: false)
    }
}

enum JSONText {
    static func encode(_ object: Any, pretty: Bool) -> String {
        var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { options.insert(.prettyPrinted) }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: options)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
