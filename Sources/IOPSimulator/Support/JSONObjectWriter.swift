/// Writes one JSON object field by field, in the order given.
///
/// The simulator writes its bodies by hand rather than through `JSONEncoder`
/// because it must choose, per field, whether a number goes out as a number or
/// as a numeric string, keep the vendor's field order, and sometimes send a
/// deliberately broken body.
struct JSONObjectWriter {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var isEmpty = true

    mutating func string(_ key: String, _ value: String) {
        self.key(key)
        Self.appendString(value, to: &bytes)
    }

    mutating func number(_ key: String, _ value: Int64) {
        self.key(key)
        bytes.append(contentsOf: String(value).utf8)
    }

    /// A number, or the same number as a string, as the gateway sends either.
    mutating func number(_ key: String, _ value: Int64, asString: Bool) {
        if asString { string(key, String(value)) } else { number(key, value) }
    }

    mutating func null(_ key: String) {
        self.key(key)
        bytes.append(contentsOf: "null".utf8)
    }

    mutating func object(_ key: String, _ nested: JSONObjectWriter) {
        self.key(key)
        bytes.append(contentsOf: nested.finished())
    }

    mutating func array(_ key: String, _ elements: [JSONObjectWriter]) {
        self.key(key)
        bytes.append(UInt8(ascii: "["))
        for (index, element) in elements.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: element.finished())
        }
        bytes.append(UInt8(ascii: "]"))
    }

    func finished() -> [UInt8] {
        bytes + [UInt8(ascii: "}")]
    }

    private mutating func key(_ key: String) {
        if !isEmpty { bytes.append(UInt8(ascii: ",")) }
        isEmpty = false
        Self.appendString(key, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    private static func appendString(_ text: String, to bytes: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\\"): bytes.append(contentsOf: "\\\\".utf8)
            case 0x0A: bytes.append(contentsOf: "\\n".utf8)
            case 0x0D: bytes.append(contentsOf: "\\r".utf8)
            case 0x09: bytes.append(contentsOf: "\\t".utf8)
            case 0..<0x20:
                bytes.append(contentsOf: "\\u00".utf8)
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0x0F)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
