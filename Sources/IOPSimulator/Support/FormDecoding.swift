/// Decodes `application/x-www-form-urlencoded` text: query strings and form bodies.
enum FormDecoding {
    /// The pairs of `a=1&b=2` in order, with `+` read as a space and `%XX` decoded.
    /// Malformed escapes are kept literally, as lenient servers do.
    static func pairs(_ text: Substring) -> [(key: String, value: String)] {
        text.split(separator: "&", omittingEmptySubsequences: true).map { field in
            if let equals = field.firstIndex(of: "=") {
                return (decode(field[..<equals]), decode(field[field.index(after: equals)...]))
            }
            return (decode(field), "")
        }
    }

    static func decode(_ text: Substring) -> String {
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
