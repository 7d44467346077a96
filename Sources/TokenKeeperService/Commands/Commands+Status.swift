import Foundation
import Logging
import SQLiteStore
import TokenKeeperCore

extension Commands {
    /// `tokenkeeper status [--json]`: one screen for a person: whether the
    /// daemon runs and is healthy, counts by status, the next refreshes, who
    /// must authorize again now and soon (with links), recent failures and
    /// pending notifications.
    public static func status(json: Bool, configPath: String?) async -> CommandOutcome {
        await execute(configPath: configPath) { context throws(CommandFailure) in
            let configuration = context.configuration
            let now = context.wallClock.now()
            guard context.configuredStoreExists else {
                let presence = StorePresence(
                    directory: configuration.storage.directory,
                    daemon: StorageLock.probe(directory: configuration.storage.directory))
                let report = StatusReport(presence: presence, now: now)
                Console.out(json ? report.json() : report.text())
                return .success
            }
            let opened = try await context.openConfiguredStore(.command(checkReaders: false))
            let presence = await opened.presence()
            let store = opened.store
            let result: Result<StatusReport, CommandFailure>
            do throws(CommandFailure) {
                result = .success(
                    try await storeCall("reading the status") {
                        var report = StatusReport(presence: presence, now: now)
                        let horizon = now + configuration.notify.reauthWarning
                        report.figures = try await store.fleetFigures(reauthHorizon: horizon)
                        report.byApp = try await store.statusCounts()
                        report.apps = configuration.apps.map(\.name)
                        report.warningDays = configuration.notify.reauthWarningDays
                        report.nextRefreshes = try await store.nextRefreshes(limit: 5)
                        report.reauthNow = try await store.accountsNeedingReauthorization(limit: 50)
                        report.reauthSoon = try await store.accountsDueForReauthorization(horizon: horizon, limit: 50)
                        report.recentFailures = try await store.events(
                            EventQuery(since: now - .seconds(86_400), kind: .refreshFailed, limit: 10))
                        report.degraded = StatusReport.openDegradations(
                            try await store.events(EventQuery(kind: .degraded, limit: 20))
                                + (try await store.events(EventQuery(kind: .recovered, limit: 20))))
                        report.deliveries = try await store.deliveryCounts()
                        if configuration.apps.contains(where: {
                            AuthorizationLinks.missingSettings($0, in: configuration) == nil
                        }) {
                            let links = try await AuthorizationLinks.load(
                                store: store, configuration: configuration, now: now)
                            for account in report.reauthNow + report.reauthSoon {
                                report.links[account.key] = links.url(for: account.key, now: now)
                            }
                        }
                        return report
                    })
            } catch {
                result = .failure(error)
            }
            await opened.close()
            let report = try result.get()
            Console.out(json ? report.json() : report.text())
            return .success
        }
    }
}

/// What `status` shows; never a token.
struct StatusReport {
    var presence: StorePresence
    var now: Timestamp
    var figures = FleetFigures()
    /// Counts by app (``ManagedAccountStore/statusCounts()``), and the apps
    /// configured: with more than one, `status` shows a line per app.
    var byApp: [AppName: [AccountStatus: Int]] = [:]
    var apps: [AppName] = [.default]
    var warningDays: Double = 7
    var nextRefreshes: [Account] = []
    var reauthNow: [Account] = []
    var reauthSoon: [Account] = []
    var recentFailures: [StoredEvent] = []
    /// Reason name → the latest `degraded` detail not followed by `recovered`.
    var degraded: [String: String] = [:]
    var deliveries: [String: DeliveryCounts] = [:]
    var links: [AccountKey: String] = [:]

    init(presence: StorePresence, now: Timestamp) {
        self.presence = presence
        self.now = now
    }

    /// From the latest degraded and recovered events: the reasons still open.
    static func openDegradations(_ events: [StoredEvent]) -> [String: String] {
        var open: [String: String] = [:]
        for event in events.sorted(by: { $0.id < $1.id }) {
            let detail = event.detail ?? ""
            let reason = String(detail.prefix { $0 != ":" })
            if event.kind == .degraded { open[reason] = detail } else { open[reason] = nil }
        }
        return open
    }

    func text() -> String {
        var lines = [
            "tokenkeeper \(TokenKeeperVersion.current), storage \(presence.storage)", "daemon:  \(presence.daemon)",
        ]
        lines += presence.details
        lines.append(
            "health:  " + (degraded.isEmpty ? "ok" : "DEGRADED: " + degraded.values.sorted().joined(separator: "; ")))
        let counts = AccountStatus.allCases.map { "\(figures.byStatus[$0] ?? 0) \($0.rawValue)" }.joined(
            separator: ", ")
        lines.append("accounts: \(counts)")
        if apps.count > 1 || byApp.keys.contains(where: { $0 != .default }) {
            for app in Set(apps).union(byApp.keys).sorted() {
                let perApp = AccountStatus.allCases.map { "\(byApp[app]?[$0] ?? 0) \($0.rawValue)" }
                    .joined(separator: ", ")
                let note = apps.contains(app) ? "" : " (not in the configuration: not refreshed)"
                lines.append("  app \(app): \(perApp)\(note)")
            }
        }
        if let expiry = figures.earliestAccessExpiry {
            lines.append("earliest access-token expiry: \(expiry) (\(Self.relative(expiry - now)))")
        }
        if !nextRefreshes.isEmpty {
            lines.append("next refreshes:")
            for account in nextRefreshes {
                let due = account.nextRefreshAt.map { "\($0) (\(Self.relative($0 - now)))" } ?? "now"
                lines.append("  \(account.key)  \(due)")
            }
        }
        lines.append("must authorize again now: \(reauthNow.count)")
        for account in reauthNow {
            lines.append(
                "  \(account.key)  \(account.statusReason ?? "reauth_required")  since \(account.updatedAt)")
            if let link = links[account.key] { lines.append("    \(link)") }
        }
        lines.append("must authorize again within \(Self.number(warningDays)) days: \(reauthSoon.count)")
        for account in reauthSoon {
            let by = account.refreshTokenValidTime.map { "\($0) (\(Self.relative($0 - now)))" } ?? "-"
            lines.append("  \(account.key)  refresh token ends \(by)")
            if let link = links[account.key] { lines.append("    \(link)") }
        }
        lines.append("failures in the last 24 h: \(recentFailures.count)" + (recentFailures.count == 10 ? "+" : ""))
        for event in recentFailures { lines.append("  " + EventListing.line(event)) }
        if deliveries.isEmpty {
            lines.append("notifications: none sent yet")
        } else {
            for (channel, counts) in deliveries.sorted(by: { $0.key < $1.key }) {
                lines.append(
                    "notifications (\(channel)): \(counts.pending) pending, \(counts.abandoned) given up, "
                        + "\(counts.delivered) delivered")
            }
        }
        return lines.joined(separator: "\n")
    }

    func json() -> String {
        func account(_ account: Account) -> [String: Any] {
            [
                "app": account.app.rawValue, "seller_id": account.sellerID, "status": account.status.rawValue,
                "status_reason": account.statusReason ?? NSNull(),
                "reauth_by": account.refreshTokenValidTime?.millisecondsSince1970 ?? NSNull(),
                "next_refresh_at": account.nextRefreshAt?.millisecondsSince1970 ?? NSNull(),
                "expire_time": account.expireTime?.millisecondsSince1970 ?? NSNull(),
                "authorize_url": links[account.key] ?? NSNull(),
            ]
        }
        let object: [String: Any] = [
            "version": TokenKeeperVersion.current,
            "storage_directory": presence.storage,
            "at": now.millisecondsSince1970,
            "daemon": presence.json(),
            "healthy": degraded.isEmpty,
            "degraded": degraded,
            "accounts": Dictionary(
                uniqueKeysWithValues: AccountStatus.allCases.map { ($0.rawValue, figures.byStatus[$0] ?? 0) }),
            "accounts_by_app": Dictionary(
                uniqueKeysWithValues: byApp.map { app, counts in
                    (
                        app.rawValue,
                        Dictionary(uniqueKeysWithValues: AccountStatus.allCases.map { ($0.rawValue, counts[$0] ?? 0) })
                    )
                }),
            "earliest_access_expiry": figures.earliestAccessExpiry?.millisecondsSince1970 ?? NSNull(),
            "next_refreshes": nextRefreshes.map(account),
            "reauth_required": reauthNow.map(account),
            "reauth_due": reauthSoon.map(account),
            "reauth_warning_days": warningDays,
            "recent_failures": recentFailures.map(EventListing.object),
            "notifications": deliveries.mapValues {
                ["pending": $0.pending, "abandoned": $0.abandoned, "delivered": $0.delivered]
            },
        ]
        return JSONText.encode(object, pretty: true)
    }

    static func relative(_ duration: Duration) -> String {
        let seconds = duration.wholeMilliseconds / 1000
        let magnitude = abs(seconds)
        let text =
            magnitude < 120
            ? "\(magnitude)s"
            : magnitude < 7200
                ? "\(magnitude / 60)m"
                : magnitude < 172_800 ? "\(magnitude / 3600)h" : "\(magnitude / 86_400)d"
        return seconds >= 0 ? "in \(text)" : "\(text) ago"
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
