/// The parameters of one IOP request as the gateway reads them: the query
/// string's pairs, then the body's fields, and the files of a multipart body.
///
/// The vendor's SDKs send a form body (`application/x-www-form-urlencoded`),
/// everything in the query for a GET, or `multipart/form-data` when a call
/// uploads files. Text fields are signed and files are not, so the simulator
/// verifies a request from ``parameters`` alone, and a signing proxy
/// decodes a reader's request, swaps fields (``setField(_:_:)``,
/// ``removeFields(named:)``) and sends it on with ``encoded(boundary:)``.
///
/// Values may carry tokens: ``description`` shows names and sizes only.
public struct IOPForm: Sendable, Equatable, CustomStringConvertible {
    /// One text parameter.
    public struct Field: Sendable, Equatable, CustomStringConvertible {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }

        public var description: String { "\(name) (\(value.utf8.count) bytes)" }
    }

    /// One uploaded file: a multipart part with a filename.
    public struct FilePart: Sendable, Equatable, CustomStringConvertible {
        /// The parameter name (the part's `name`).
        public var name: String
        /// The part's `filename`, as the client sent it; may be empty.
        public var filename: String
        /// The part's `Content-Type`; nil when it had none.
        public var contentType: String?
        public var body: [UInt8]

        public init(name: String, filename: String, contentType: String? = nil, body: [UInt8]) {
            self.name = name
            self.filename = filename
            self.contentType = contentType
            self.body = body
        }

        public var description: String { "\(name) (file \"\(filename)\", \(body.count) bytes)" }
    }

    /// The most fields and files one request may carry together; more is
    /// refused (``IOPFormError/tooManyFields(limit:)``) rather than decoded.
    public static let maxFields = 1_000

    /// The gateway's system parameters: who calls, for whom, how it signed,
    /// and which API (`method` on `/sync`). Everything else is an API parameter.
    public static let systemParameterNames: Set<String> = [
        "app_key", "sign", "sign_method", "timestamp", "access_token", "session", "partner_id", "method",
        "simplify", "format", "v", "debug",
    ]

    /// The text parameters in the order received: the query's, then the body's.
    public var fields: [Field]
    /// The files of a multipart body, in order.
    public var files: [FilePart]

    public init(fields: [Field] = [], files: [FilePart] = []) {
        self.fields = fields
        self.files = files
    }

    public var description: String {
        "IOPForm(\((fields.map(\.description) + files.map(\.description)).joined(separator: ", ")))"
    }

    /// Every text parameter by name; where a name appears twice the first
    /// value wins (the query's before the body's), as the gateway reads it.
    public var parameters: [String: String] {
        var parameters: [String: String] = [:]
        for field in fields where parameters[field.name] == nil {
            parameters[field.name] = field.value
        }
        return parameters
    }

    /// The first value of the parameter `name`, as ``parameters`` would give it.
    public func value(of name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    // MARK: - Changing

    /// Drops every field whose name is in `names`; files stay.
    public mutating func removeFields(named names: Set<String>) {
        fields.removeAll { names.contains($0.name) }
    }

    /// Gives the parameter `name` the one value `value`: the first field of
    /// that name keeps its place and takes the value, any later ones go; a
    /// name not present is appended.
    public mutating func setField(_ name: String, _ value: String) {
        guard let first = fields.firstIndex(where: { $0.name == name }) else {
            fields.append(Field(name: name, value: value))
            return
        }
        fields[first].value = value
        let later = fields.index(after: first)...
        fields.replaceSubrange(later, with: fields[later].filter { $0.name != name })
    }

    // MARK: - Decoding

    /// Reads one request's parameters.
    /// - Parameters:
    ///   - query: The URL's query, without the `?`.
    ///   - contentType: The `Content-Type` header. A form body when nil or
    ///     `application/x-www-form-urlencoded`; `multipart/form-data` needs its
    ///     `boundary`; a body of any other type carries no parameters.
    ///   - body: The request body.
    /// - Throws: ``IOPFormError`` for a multipart body without a boundary or
    ///   that does not parse, and for more than ``maxFields`` fields and files.
    public static func decode(query: Substring, contentType: String?, body: [UInt8]) throws(IOPFormError) -> IOPForm {
        var form = IOPForm(fields: PercentEncoding.formDecode(query).map { Field(name: $0.key, value: $0.value) })
        guard form.fields.count <= maxFields else { throw .tooManyFields(limit: maxFields) }
        let mediaType = contentType.map(HeaderValue.init)
        switch mediaType?.value {
        case nil, "application/x-www-form-urlencoded":
            let text = String(decoding: body, as: UTF8.self)
            form.fields += PercentEncoding.formDecode(text[...]).map { Field(name: $0.key, value: $0.value) }
        case "multipart/form-data":
            guard let boundary = mediaType?.parameters["boundary"], !boundary.isEmpty else {
                throw .missingBoundary
            }
            try form.appendMultipart(body, boundary: boundary)
        default:
            break
        }
        guard form.fields.count + form.files.count <= maxFields else { throw .tooManyFields(limit: maxFields) }
        return form
    }

    // MARK: - Encoding

    /// The form as a request body: form-encoded when there are no files
    /// (``PercentEncoding``'s strict encoding), else `multipart/form-data`
    /// with every field and then every file as a part.
    /// ``decode(query:contentType:body:)`` of the result gives back the same form.
    /// - Parameter boundary: The multipart boundary, used only when there are
    ///   files; it must not occur in any value or file (``makeBoundary()``
    ///   draws one that will not).
    /// - Returns: The `Content-Type` header and the body.
    public func encoded(boundary: String) -> (contentType: String, body: [UInt8]) {
        guard !files.isEmpty else {
            let pairs = fields.map { (key: $0.name, value: $0.value) }
            return (IOPRequest.contentType, Array(PercentEncoding.formEncode(pairs).utf8))
        }
        return ("multipart/form-data; boundary=\(boundary)", multipartBody(boundary: boundary))
    }

    /// A fresh multipart boundary: 32 random hex digits, which no value or
    /// file guesses.
    public static func makeBoundary() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = (0..<4).map { _ in String(generator.next() as UInt32, radix: 16) }
        return "IOPForm" + digits.map { String(repeating: "0", count: 8 - $0.count) + $0 }.joined()
    }
}
