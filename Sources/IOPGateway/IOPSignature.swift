import Crypto
import Foundation

/// The IOP request signature, as the vendor's SDKs compute it for system APIs.
///
/// Sort every parameter except `sign` by key (byte order), concatenate the API
/// path and then `key1value1key2value2…` with raw (not URL-encoded) values, and
/// take HMAC-SHA256 with the app secret as upper-case hex. Empty values are
/// neither sent nor signed. This is the only implementation: the client signs
/// with it and the simulator verifies with it.
///
/// Two variants the SDKs use: `/sync` calls (the iop SDKs, API named by the
/// `method` parameter) sign no path, which is `apiPath` `""`; and the Python
/// SDK (lazop) signs empty values too, as `key` followed by nothing
/// (`includingEmptyValues`).
public enum IOPSignature {
    /// The name of the signature parameter, which is never part of the signed text.
    public static let parameterName = "sign"

    /// Signs `parameters` for `apiPath` with `secret`.
    /// - Parameters:
    ///   - apiPath: The API name, e.g. `/auth/token/refresh`; `""` for a `/sync` call.
    ///   - parameters: System and API parameters; `sign` is ignored.
    ///   - secret: The app secret.
    ///   - includingEmptyValues: Sign parameters with empty values as their
    ///     name alone, as the Python SDK does; by default they are left out,
    ///     as the Java SDK does (which does not send them either).
    /// - Returns: 64 upper-case hex digits.
    public static func sign(
        apiPath: String, parameters: [String: String], secret: String, includingEmptyValues: Bool = false
    ) -> String {
        var message = Array(apiPath.utf8)
        let keys = parameters.keys
            .filter { $0 != parameterName && (includingEmptyValues || !(parameters[$0] ?? "").isEmpty) }
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        for key in keys {
            message.append(contentsOf: key.utf8)
            message.append(contentsOf: parameters[key]!.utf8)
        }
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Array(secret.utf8)))
        return hexUppercase(mac)
    }

    /// Compares a received signature with the expected one in constant time.
    /// - Parameters:
    ///   - signature: The `sign` received, in either case.
    ///   - apiPath: The API name signed; `""` for a `/sync` call.
    ///   - parameters: The parameters received.
    ///   - secret: The app secret.
    ///   - includingEmptyValues: Expect empty values signed (the Python SDK's way) rather than left out.
    public static func verify(
        signature: String, apiPath: String, parameters: [String: String], secret: String,
        includingEmptyValues: Bool = false
    ) -> Bool {
        let expected = Array(
            sign(
                apiPath: apiPath, parameters: parameters, secret: secret, includingEmptyValues: includingEmptyValues
            ).utf8)
        let received = Array(signature.uppercased().utf8)
        guard expected.count == received.count else { return false }
        var difference: UInt8 = 0
        for index in expected.indices { difference |= expected[index] ^ received[index] }
        return difference == 0
    }

    private static func hexUppercase(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
