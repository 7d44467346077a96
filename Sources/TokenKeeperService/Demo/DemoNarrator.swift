import Foundation
import RefreshScheduler
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Prints the demo's narrative on stdout, one line per happening.
final class DemoNarrator: Sendable {
    func say(_ text: String) {
        Console.out(text)
    }

    func relative(_ timestamp: Timestamp?) -> String {
        guard let timestamp else { return "now" }
        let seconds = Double((timestamp - SystemWallClock().now()).wholeMilliseconds) / 1000
        return seconds <= 0 ? "now" : "in \(String(format: "%.0f", seconds)) s"
    }

    func report(_ event: SchedulerEvent) {
        let time = Self.clockTime()
        switch event {
        case .ready(let snapshot):
            say(
                "\(time)  daemon ready: \(snapshot.scheduled) sellers scheduled, next refresh \(relative(snapshot.nextDue))"
            )
        case .refreshed(let sellerID, let requestID, let nextDue, _):
            say(
                "\(time)  refreshed        \(sellerID)  next refresh \(relative(nextDue))  request_id \(requestID ?? "-")"
            )
        case .failed(let sellerID, let failure, let nextDue):
            say("\(time)  refresh failed   \(sellerID)  \(failure.code); keeps its token, retry \(relative(nextDue))")
        case .reauthRequired(let sellerID, let reason, let requestID):
            say(
                "\(time)  REAUTH REQUIRED  \(sellerID)  \(reason) (request_id \(requestID ?? "-")): no more calls "
                    + "for it until the seller authorizes again")
        case .degraded(let reason):
            say("\(time)  DEGRADED: \(DaemonStatus.describe(reason))")
        case .recovered:
            say("\(time)  recovered")
        case .stopped(let snapshot):
            say("\(time)  daemon stopped after \(snapshot.refreshed) refreshes")
        case .rotationUnstored(let sellerID, _, _):
            say("\(time)  UNSTORED ROTATION  \(sellerID): saved beside the store for 'tokenkeeper import'")
        case .tick, .started:
            break
        }
    }

    func deadlines(_ accounts: [Account]) {
        let now = SystemWallClock().now()
        let parts = accounts.sorted { ($0.nextRefreshAt ?? now) < ($1.nextRefreshAt ?? now) }.map { account in
            switch account.status {
            case .active: "\(account.sellerID) \(relative(account.nextRefreshAt))"
            case .reauthRequired: "\(account.sellerID) reauth_required"
            case .disabled: "\(account.sellerID) disabled"
            }
        }
        say("\(Self.clockTime())  next refreshes: " + parts.joined(separator: ", "))
    }

    static func clockTime() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        return String(format: "%02d:%02d:%02d", parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}
