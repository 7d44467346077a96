import Testing

@testable import IOPGateway

@Suite struct IOPFormTests {
    /// A body as Python's requests (urllib3 2) writes it for the lazop SDK's
    /// file uploads: the signed parameters as parts, then the file.
    static let pythonBoundary = "94319bf02b4fc3010c6130052740d2e3"
    static let pythonBody: [UInt8] =
        Array(
            """
            --94319bf02b4fc3010c6130052740d2e3\r
            Content-Disposition: form-data; name="app_key"\r
            \r
            500102\r
            --94319bf02b4fc3010c6130052740d2e3\r
            Content-Disposition: form-data; name="title"\r
            \r
            a;b "q"\r
            --94319bf02b4fc3010c6130052740d2e3\r
            Content-Disposition: form-data; name="empty"\r
            \r
            \r
            --94319bf02b4fc3010c6130052740d2e3\r
            Content-Disposition: form-data; name="image"; filename="photo 1.png"\r
            Content-Type: image/png\r
            \r

            """.utf8) + [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array("--x\r\n".utf8)
        + Array("\r\n--94319bf02b4fc3010c6130052740d2e3--\r\n".utf8)

    /// Values that form encoding must carry unchanged.
    static let awkwardFields = [
        IOPForm.Field(name: "title", value: "店铺 ✓ naïve"),
        IOPForm.Field(name: "plus", value: "1+1 = 2"),
        IOPForm.Field(name: "amp", value: "a&b=c&"),
        IOPForm.Field(name: "percent", value: "100%25 %zz"),
        IOPForm.Field(name: "empty", value: ""),
        IOPForm.Field(name: "key with spaces&=", value: "line\r\nbreak"),
        IOPForm.Field(name: "plus", value: "second"),
    ]

    /// Every byte value, a CRLF and dashes: nothing a multipart body must not hold but its boundary.
    static let binary: [UInt8] = Array(0...255) + Array("\r\n--\r\n--".utf8) + [0, 0xFF]

    static func decode(_ query: String = "", contentType: String?, body: [UInt8]) throws(IOPFormError) -> IOPForm {
        try IOPForm.decode(query: query[...], contentType: contentType, body: body)
    }

    static func decodeError(contentType: String?, body: [UInt8]) -> IOPFormError? {
        do {
            _ = try decode(contentType: contentType, body: body)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Reading

    @Test func readsTheQueryBeforeTheFormBodyAndTheFirstValueWins() throws {
        let form = try Self.decode(
            "app_key=500102&a=1&a=2", contentType: nil, body: Array("b=%E5%BA%97+x&a=3&flag".utf8))
        #expect(form.fields.map(\.name) == ["app_key", "a", "a", "b", "a", "flag"])
        #expect(form.parameters == ["app_key": "500102", "a": "1", "b": "店 x", "flag": ""])
        #expect(form.value(of: "a") == "1")
        #expect(form.files.isEmpty)
    }

    @Test func readsAFormBodyWhateverTheCaseAndParametersOfItsContentType() throws {
        let form = try Self.decode(
            contentType: "Application/X-WWW-Form-URLEncoded ; charset=UTF-8", body: Array("a=1".utf8))
        #expect(form.parameters == ["a": "1"])
    }

    @Test func aBodyOfAnotherTypeCarriesNoParameters() throws {
        let form = try Self.decode("a=1", contentType: "application/json", body: Array(#"{"b":"2"}"#.utf8))
        #expect(form.parameters == ["a": "1"])
    }

    @Test func readsTheMultipartBodyPythonsRequestsWrites() throws {
        let form = try Self.decode(
            "sign=ABC", contentType: "multipart/form-data; boundary=\(Self.pythonBoundary)", body: Self.pythonBody)
        #expect(
            form.fields == [
                .init(name: "sign", value: "ABC"), .init(name: "app_key", value: "500102"),
                .init(name: "title", value: "a;b \"q\""), .init(name: "empty", value: ""),
            ])
        #expect(form.files.count == 1)
        let file = try #require(form.files.first)
        #expect(file.name == "image")
        #expect(file.filename == "photo 1.png")
        #expect(file.contentType == "image/png")
        #expect(file.body == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array("--x\r\n".utf8))
        // Files are not parameters: they are not signed.
        #expect(form.parameters["image"] == nil)
    }

    @Test func readsAQuotedBoundaryQuotedSemicolonsAndEscapedQuotes() throws {
        let body = Array(
            """
            preamble to ignore\r
            --b;1\r
            content-disposition: form-data; filename="x%22;y.txt" ; name="n;1"\r
            \r
            body\r
            --b;1--\r
            epilogue to ignore
            """.utf8)
        let form = try Self.decode(contentType: #"multipart/form-data; boundary="b;1""#, body: body)
        #expect(form.files == [IOPForm.FilePart(name: "n;1", filename: "x\";y.txt", body: Array("body".utf8))])
    }

    @Test func anEmptyMultipartFormHasNoParameters() throws {
        let form = try Self.decode(contentType: "multipart/form-data; boundary=xyz", body: Array("--xyz--\r\n".utf8))
        #expect(form == IOPForm())
    }

    // MARK: - Refusing

    @Test func aMultipartBodyWithoutABoundaryIsRefused() {
        #expect(Self.decodeError(contentType: "multipart/form-data", body: Self.pythonBody) == .missingBoundary)
        #expect(
            Self.decodeError(contentType: "multipart/form-data; boundary=", body: Self.pythonBody) == .missingBoundary)
        let long = String(repeating: "b", count: 71)
        #expect(Self.decodeError(contentType: "multipart/form-data; boundary=\(long)", body: []) == .invalidBoundary)
    }

    @Test func aMultipartBodyCutShortAnywhereIsRefused() throws {
        let contentType = "multipart/form-data; boundary=\(Self.pythonBoundary)"
        let complete = Self.pythonBody.count - 2  // without the final CRLF, which is epilogue
        for length in 0..<complete {
            let error = Self.decodeError(contentType: contentType, body: Array(Self.pythonBody.prefix(length)))
            #expect(error == .unterminatedMultipart || error == .malformedPart, "cut at \(length)")
        }
        let whole = try Self.decode(contentType: contentType, body: Array(Self.pythonBody.prefix(complete)))
        #expect(whole.files.count == 1)
    }

    /// Damage of every kind (flipped bytes, cuts, repeated delimiters, stray
    /// CRs and quotes): each body is read or refused with an error, and a
    /// body that is read still round-trips.
    @Test func damagedMultipartBodiesAreReadOrRefusedNeverCrash() throws {
        let contentType = "multipart/form-data; boundary=\(Self.pythonBoundary)"
        let fragments: [[UInt8]] = [
            Array("\r\n--\(Self.pythonBoundary)".utf8), Array("--".utf8), [0x0D], [0x0A], Array("\"".utf8),
            Array(";".utf8), Array(":".utf8), [0],
        ]
        var state: UInt64 = 0x5EED
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        var read = 0
        for _ in 0..<3_000 {
            var body = Self.pythonBody
            for _ in 0...next(3) {
                let at = next(body.count)
                switch next(4) {
                case 0: body[at] = UInt8(next(256))
                case 1: body.removeSubrange(at..<min(body.count, at + 1 + next(40)))
                case 2: body.insert(contentsOf: fragments[next(fragments.count)], at: at)
                default: body = Array(body.prefix(at))
                }
                if body.isEmpty { break }
            }
            guard let form = try? Self.decode(contentType: contentType, body: body) else { continue }
            read += 1
            let encoded = form.encoded(boundary: IOPForm.makeBoundary())
            #expect(try Self.decode(contentType: encoded.contentType, body: encoded.body) == form)
        }
        #expect(read > 0)
    }

    @Test func aBodyThatIsNotMultipartIsRefused() {
        let error = Self.decodeError(contentType: "multipart/form-data; boundary=xyz", body: Array("a=1&b=2".utf8))
        #expect(error == .unterminatedMultipart)
    }

    @Test func aPartWhoseHeadersDoNotParseIsRefused() {
        let noColon = Array("--xyz\r\nContent-Disposition form-data\r\n\r\nv\r\n--xyz--\r\n".utf8)
        #expect(Self.decodeError(contentType: "multipart/form-data; boundary=xyz", body: noColon) == .malformedPart)
        // Headers still open when the closing delimiter comes.
        let unended = Array("--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n--xyz--\r\n".utf8)
        #expect(Self.decodeError(contentType: "multipart/form-data; boundary=xyz", body: unended) == .malformedPart)
    }

    /// MultipartKit 4.7.1's parser traps on such a byte (a 128-entry table): a
    /// client's body must never stop the process.
    @Test func aHeaderNameOutsideASCIIIsRefused() throws {
        let contentType = "multipart/form-data; boundary=xyz"
        let body = Array("--xyz\r\n".utf8) + [0xC3, 0xA9] + Array(": x\r\n\r\nv\r\n--xyz--\r\n".utf8)
        #expect(Self.decodeError(contentType: contentType, body: body) == .malformedPart)
        // In a value (a UTF-8 filename) it is fine.
        let disposition = "Content-Disposition: form-data; name=\"f\"; filename=\"é\""
        let file = Array("--xyz\r\n\(disposition)\r\n\r\nv\r\n--xyz--".utf8)
        #expect(try Self.decode(contentType: contentType, body: file).files.first?.filename == "é")
    }

    @Test func aPartWithoutANameIsRefused() {
        let body = Array("--xyz\r\nContent-Type: text/plain\r\n\r\nv\r\n--xyz--\r\n".utf8)
        #expect(Self.decodeError(contentType: "multipart/form-data; boundary=xyz", body: body) == .partWithoutName)
    }

    @Test func moreThanTheLimitOfFieldsAndFilesIsRefused() throws {
        let limit = IOPForm.maxFields
        let pairs = (0..<limit).map { "f\($0)=v" }.joined(separator: "&")
        #expect(try Self.decode(pairs, contentType: nil, body: []).fields.count == limit)
        #expect(
            Self.decodeError(contentType: nil, body: Array((pairs + "&one=more").utf8)) == .tooManyFields(limit: limit))
        // Files count too.
        var form = IOPForm(fields: (0..<limit).map { IOPForm.Field(name: "f\($0)", value: "v") })
        form.files = [IOPForm.FilePart(name: "image", filename: "a.png", body: [1])]
        let encoded = form.encoded(boundary: "xyz")
        #expect(Self.decodeError(contentType: encoded.contentType, body: encoded.body) == .tooManyFields(limit: limit))
    }

    @Test func errorsAndTheFormsDescriptionNeverShowAValue() throws {
        let form = try Self.decode("access_token=50000secret", contentType: nil, body: [])
        #expect(!form.description.contains("50000secret"))
        #expect(form.description.contains("access_token"))
        let errors: [IOPFormError] = [
            .missingBoundary, .invalidBoundary, .unterminatedMultipart, .malformedPart, .partWithoutName,
            .tooManyFields(limit: 1000),
        ]
        for error in errors { #expect(!error.description.isEmpty) }
    }

    // MARK: - Writing

    @Test func withoutFilesItEncodesAFormBodyThatDecodesToTheSameForm() throws {
        let form = IOPForm(fields: Self.awkwardFields)
        let (contentType, body) = form.encoded(boundary: "unused")
        #expect(contentType == "application/x-www-form-urlencoded;charset=UTF-8")
        // The strict encoding: no `+`, no raw `&` or `=` inside a value.
        let text = String(decoding: body, as: UTF8.self)
        #expect(
            text.hasPrefix("title=%E5%BA%97%E9%93%BA%20%E2%9C%93%20na%C3%AFve&plus=1%2B1%20%3D%202&amp=a%26b%3Dc%26&"))
        #expect(try Self.decode(contentType: contentType, body: body) == form)
    }

    @Test func withFilesItEncodesMultipartThatDecodesToTheSameForm() throws {
        let form = IOPForm(
            fields: Self.awkwardFields,
            files: [
                IOPForm.FilePart(name: "image", filename: "ph\"oto ✓.png", contentType: "image/png", body: Self.binary),
                IOPForm.FilePart(name: "image", filename: "", body: []),
                IOPForm.FilePart(name: "n;a=m\"e", filename: "a;b.bin", contentType: nil, body: Array("\r\n".utf8)),
            ])
        let boundary = IOPForm.makeBoundary()
        let (contentType, body) = form.encoded(boundary: boundary)
        #expect(contentType == "multipart/form-data; boundary=\(boundary)")
        #expect(try Self.decode(contentType: contentType, body: body) == form)
    }

    @Test func encodesFieldsAndFilesAsPythonsRequestsDoes() throws {
        let form = try Self.decode(
            contentType: "multipart/form-data; boundary=\(Self.pythonBoundary)", body: Self.pythonBody)
        #expect(form.encoded(boundary: Self.pythonBoundary).body == Self.pythonBody)
    }

    @Test func boundariesAreFreshAndShort() {
        let first = IOPForm.makeBoundary()
        #expect(first != IOPForm.makeBoundary())
        #expect(first.count == 39 && first.count <= IOPForm.maxBoundaryLength)
    }

    // MARK: - Changing

    @Test func setFieldReplacesEveryValueWithOneInTheFirstPlaceOrAppends() {
        var form = IOPForm(fields: [
            .init(name: "access_token", value: "reader"), .init(name: "a", value: "1"),
            .init(name: "access_token", value: "again"),
        ])
        form.setField("access_token", "seller")
        #expect(form.fields == [.init(name: "access_token", value: "seller"), .init(name: "a", value: "1")])
        form.setField("sign", "ABC")
        #expect(form.fields.last == .init(name: "sign", value: "ABC"))
    }

    @Test func removeFieldsDropsEveryFieldOfThoseNamesAndKeepsFiles() {
        var form = IOPForm(
            fields: [.init(name: "sign", value: "x"), .init(name: "a", value: "1"), .init(name: "sign", value: "y")],
            files: [.init(name: "sign", filename: "f", body: [1])])
        form.removeFields(named: ["sign", "app_key"])
        #expect(form.fields == [.init(name: "a", value: "1")])
        #expect(form.files.count == 1)
    }
}
