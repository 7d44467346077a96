/// Percent-encoding for query strings and form bodies, both ways.
///
/// Encoding: everything but RFC 3986's unreserved characters is encoded, and
/// a space becomes `%20` rather than `+`: every form decoder reads `%20` as a
/// space, while a literal `+` would be ambiguous to a plain URL decoder. Values
/// are signed raw and sent encoded, so the encoding never affects the signature.
///
/// Decoding reads what the vendor's SDKs and browsers send
/// (`application/x-www-form-urlencoded`): `+` is a space, `%XX` a byte.
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

    /// The pairs of `a=1&b=2` in order, both sides decoded; a pair without `=`
    /// has an empty value, and empty pairs (`a=1&&b=2`) are skipped.
    public static func formDecode(_ text: Substring) -> [(key: String, value: String)] {
        text.split(separator: "&", omittingEmptySubsequences: true).map { field in
            if let equals = field.firstIndex(of: "=") {
                return (decode(field[..<equals]), decode(field[field.index(after: equals)...]))
            }
            return (decode(field), "")
        }
    }

    /// One form-encoded text, `+` read as a space and `%XX` decoded. Malformed
    /// escapes are kept literally and invalid UTF-8 is repaired, as lenient
    /// servers do: a request is never refused for its encoding.
    public static func decode(_ text: Substring) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                out.append(high << 4 | low)
                index += 2
            } else {
                out.append(byte)
            }
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
