/// A secret string (app secret, access token, refresh token) that cannot leak by
/// accident: its `description`, `debugDescription` and reflection show only a
/// short fingerprint, so string interpolation into logs, errors and test output
/// never reveals it. Code that must send or store the value reads
/// ``exposedValue`` explicitly.
public struct Secret: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// The secret itself. Read it only to send it to the gateway or to store it.
    public let exposedValue: String

    public init(_ exposedValue: String) {
        self.exposedValue = exposedValue
    }

    public var isEmpty: Bool { exposedValue.isEmpty }

    /// Eight hex digits of a 64-bit FNV-1a hash: enough to tell two tokens apart
    /// in a log, far too little to recover or guess a token from.
    public var fingerprint: String {
        Secret.fingerprint(of: exposedValue)
    }

    public static func fingerprint(of value: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in value.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        let hex = String(hash >> 32, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    public var description: String { "‹\(fingerprint)›" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["fingerprint": fingerprint]) }
}
