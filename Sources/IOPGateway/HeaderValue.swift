/// A header value with parameters, as in `Content-Type` and
/// `Content-Disposition`: `form-data; name="a"; filename="b.jpg"`.
///
/// A quoted value runs to the next `"` (browsers and urllib3 escape a quote
/// inside a name as `%22`, not with a backslash), so a `;` inside quotes
/// does not end it.
struct HeaderValue {
    /// The part before the first `;`, trimmed and lower-cased: `multipart/form-data`, `form-data`.
    var value: String
    /// The parameters by lower-cased name, values unquoted; the first of a name wins.
    var parameters: [String: String] = [:]

    init(_ text: String) {
        let bytes = Array(text.utf8)
        var index = bytes.startIndex

        func read(while condition: (UInt8) -> Bool) -> String {
            let start = index
            while index < bytes.endIndex, condition(bytes[index]) { index += 1 }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }
        func skipSpaces() {
            _ = read { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        }

        value = Self.trimmed(read { $0 != UInt8(ascii: ";") }).lowercased()
        while index < bytes.endIndex {
            index += 1  // the `;`
            skipSpaces()
            let name = Self.trimmed(read { $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: ";") }).lowercased()
            guard index < bytes.endIndex, bytes[index] == UInt8(ascii: "=") else { continue }
            index += 1
            skipSpaces()
            let parameter: String
            if index < bytes.endIndex, bytes[index] == UInt8(ascii: "\"") {
                index += 1
                parameter = read { $0 != UInt8(ascii: "\"") }
                // Anything between the closing quote and the next `;` is ignored.
                _ = read { $0 != UInt8(ascii: ";") }
            } else {
                parameter = Self.trimmed(read { $0 != UInt8(ascii: ";") })
            }
            if !name.isEmpty, parameters[name] == nil { parameters[name] = parameter }
        }
    }

    private static func trimmed(_ text: String) -> String {
        let isSpace = { (character: Character) in character == " " || character == "\t" }
        return String(text.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
