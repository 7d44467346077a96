// `multipart/form-data` both ways (RFC 7578 over RFC 2046's framing).
//
// Names and filenames are written as browsers and Python's urllib3 write them
// (WHATWG HTML): quoted, with `"`, CR and LF as `%22`, `%0D` and `%0A`, every
// other byte raw (UTF-8 included); reading undoes those three escapes, so a
// name holding the literal text `%22` reads back as `"`.
//
// The reader is our own rather than MultipartKit's `MultipartParser` (4.7.1),
// which traps on a part header name holding a byte of 0x80 or more (it indexes
// a 128-entry table with it) and takes a body cut short for one still
// arriving: a proxy reading its clients' bodies must refuse both with an error.
extension IOPForm {
    /// The longest boundary RFC 2046 allows.
    static let maxBoundaryLength = 70

    private static let crlf: [UInt8] = [0x0D, 0x0A]
    private static let dashes: [UInt8] = [0x2D, 0x2D]

    /// Appends the fields and files of a multipart body.
    ///
    /// The body is a preamble (ignored), `--boundary`, then parts each
    /// introduced by CRLF and ended by CRLF `--boundary`, until a delimiter
    /// followed by `--` (whatever follows is an epilogue, ignored). A part is
    /// header lines, an empty line, and its content.
    mutating func appendMultipart(_ body: [UInt8], boundary: String) throws(IOPFormError) {
        guard boundary.utf8.count <= Self.maxBoundaryLength,
            boundary.utf8.allSatisfy({ (0x20...0x7E).contains($0) })
        else { throw .invalidBoundary }
        let delimiter = Array("--\(boundary)".utf8)
        let nextDelimiter = Self.crlf + delimiter
        guard let first = body.firstRange(of: delimiter) else { throw .unterminatedMultipart }
        var position = first.upperBound
        while true {
            // After a delimiter: `--` ends the body, else transport padding and CRLF open a part.
            var rest = body[position...]
            if rest.starts(with: Self.dashes) { return }
            rest = rest.drop { $0 == 0x20 || $0 == 0x09 }
            guard rest.starts(with: Self.crlf) else {
                let cutShort = Self.dashes.starts(with: rest) || Self.crlf.starts(with: rest)
                throw cutShort ? .unterminatedMultipart : .malformedPart
            }
            rest = rest.dropFirst(2)
            guard let end = rest.firstRange(of: nextDelimiter) else { throw .unterminatedMultipart }
            try appendPart(rest[..<end.lowerBound])
            guard fields.count + files.count <= Self.maxFields else { throw .tooManyFields(limit: Self.maxFields) }
            position = end.upperBound
        }
    }

    /// One part: header lines, an empty line, the content.
    private mutating func appendPart(_ part: ArraySlice<UInt8>) throws(IOPFormError) {
        var headers: [(name: String, value: String)] = []
        var rest = part
        while !rest.starts(with: Self.crlf) {
            guard let lineEnd = rest.firstRange(of: Self.crlf) else { throw .malformedPart }
            headers.append(try Self.header(rest[..<lineEnd.lowerBound]))
            rest = rest[lineEnd.upperBound...]
        }
        let content = Array(rest.dropFirst(2))

        let disposition = headers.first { $0.name.lowercased() == "content-disposition" }
        let parameters = disposition.map { HeaderValue($0.value).parameters } ?? [:]
        guard let name = parameters["name"] else { throw .partWithoutName }
        if let filename = parameters["filename"] {
            let contentType = headers.first { $0.name.lowercased() == "content-type" }?.value
            files.append(
                FilePart(
                    name: Self.unescape(name), filename: Self.unescape(filename), contentType: contentType,
                    body: content))
        } else {
            fields.append(Field(name: Self.unescape(name), value: String(decoding: content, as: UTF8.self)))
        }
    }

    /// `Name: value`; the name a token (RFC 9110), the value without CR or LF
    /// (no folded lines: RFC 7578 has none).
    private static func header(_ line: ArraySlice<UInt8>) throws(IOPFormError) -> (name: String, value: String) {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
            line[..<colon].allSatisfy(isTokenCharacter),
            !line.contains(0x0D), !line.contains(0x0A)
        else { throw .malformedPart }
        let value = line[line.index(after: colon)...].drop { $0 == 0x20 || $0 == 0x09 }
        return (String(decoding: line[..<colon], as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"),
            UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"),
            UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default: false
        }
    }

    /// Every field, then every file, as parts between `boundary` delimiters.
    func multipartBody(boundary: String) -> [UInt8] {
        var body: [UInt8] = []
        func part(name: String, filename: String?, contentType: String?, content: [UInt8]) {
            var head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(Self.escape(name))\""
            if let filename { head += "; filename=\"\(Self.escape(filename))\"" }
            // A header cannot hold a line break: dropped rather than let it start another header.
            if let contentType { head += "\r\nContent-Type: \(contentType.filter { $0 != "\r" && $0 != "\n" })" }
            body += Array((head + "\r\n\r\n").utf8)
            body += content
            body += Self.crlf
        }
        for field in fields {
            part(name: field.name, filename: nil, contentType: nil, content: Array(field.value.utf8))
        }
        for file in files {
            part(name: file.name, filename: file.filename, contentType: file.contentType, content: file.body)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return body
    }

    private static func escape(_ text: String) -> String {
        var out = ""
        for character in text.unicodeScalars {
            switch character {
            case "\"": out += "%22"
            case "\r": out += "%0D"
            case "\n": out += "%0A"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    private static func unescape(_ text: String) -> String {
        guard text.contains("%") else { return text }
        return text.replacing("%22", with: "\"").replacing("%0D", with: "\r").replacing("%0A", with: "\n")
    }
}
