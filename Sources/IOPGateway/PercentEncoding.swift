/// Percent-encoding for query strings and form bodies.
///
/// Everything but RFC 3986's unreserved characters is encoded, and a space
/// becomes `%20` rather than `+`: every form decoder reads `%20` as a space,
/// while a literal `+` would be ambiguous to a plain URL decoder. Values are
/// signed raw and sent encoded, so the encoding never affects the signature.
public enum PercentEncoding {
    public static func encode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `key=value&…` in the order given, both sides encoded.
    public static func formEncode(_ pairs: [(key: String, value: String)]) -> String {
        pairs.map { "\(encode($0.key))=\(encode($0.value))" }.joined(separator: "&")
    }
}
