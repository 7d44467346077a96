import Foundation
import SQLiteStore
import TokenKeeperCore

/// The JSON an event is delivered as: the same bytes to the hook and the
/// webhook, and on every retry (rendered once, kept in the outbox).
///
/// `{"app":…,"at":…,"authorize_url":…,"event_id":…,"id":…,"kind":…,"reason":…,"reauth_by":…,"request_id":…,"seller_id":…}`:
/// `id` is the outbox's random uid, what receivers deduplicate by (row ids
/// repeat after a restore from a backup); `event_id` is the row in `events`
/// (`tokenkeeper events`); `app` the app the seller belongs to (null for
/// the daemon's own events). Times in milliseconds since 1970, absent values
/// as null, never a token or secret (an event's detail never holds one).
enum EventPayload {
    /// The kinds that concern one seller and carry a link to authorize again.
    static let linkedKinds: Set<EventKind> = [.reauthDue, .reauthRequired]

    static func render(_ event: StoredEvent, uid: String, reauthBy: Timestamp?, authorizeURL: String?) -> String {
        func value(_ optional: (any Sendable)?) -> Any { optional ?? NSNull() }
        let object: [String: Any] = [
            "id": uid,
            "event_id": event.id,
            "kind": event.kind.rawValue,
            "app": value(event.app?.rawValue),
            "seller_id": value(event.sellerID),
            "reason": value(event.detail),
            "reauth_by": value(reauthBy?.millisecondsSince1970),
            "at": event.at.millisecondsSince1970,
            "request_id": value(event.requestID),
            "authorize_url": value(linkedKinds.contains(event.kind) ? authorizeURL : nil),
        ]
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
