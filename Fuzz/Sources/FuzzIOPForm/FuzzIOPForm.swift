import IOPGateway

// Input layout: the first byte picks the content type (`contentTypes`, by
// the byte modulo their count); if the rest holds a NUL byte, what comes
// before the first one is the query string and what follows is the body;
// otherwise the rest is the body.
//
// Checked: IOPForm.decode, which the signing proxy runs on every request
// before anything is authenticated, never crashes and never returns more
// than `IOPForm.maxFields` fields and files; a form it returns encodes and
// decodes again without an error, to as many fields and files.

private let contentTypes: [String?] = [
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=XyZ",
    "multipart/form-data; boundary=\"quoted boundary\"", "multipart/form-data", nil, "application/json",
    "MULTIPART/FORM-DATA; BOUNDARY=XyZ; charset=utf-8",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    guard let first = bytes.first else { return 0 }
    let contentType = contentTypes[Int(first) % contentTypes.count]
    let rest = bytes.dropFirst()
    var query: Substring = ""
    var body = Array(rest)
    if let nul = rest.firstIndex(of: 0) {
        query = Substring(decoding: rest[rest.startIndex..<nul], as: UTF8.self)
        body = Array(rest[(nul + 1)...])
    }
    guard let form = try? IOPForm.decode(query: query, contentType: contentType, body: body) else { return 0 }
    precondition(form.fields.count + form.files.count <= IOPForm.maxFields, "more fields than the limit")
    let (encodedType, encodedBody) = form.encoded(boundary: IOPForm.makeBoundary())
    do {
        let again = try IOPForm.decode(query: "", contentType: encodedType, body: encodedBody)
        precondition(
            again.fields.count == form.fields.count && again.files.count == form.files.count,
            "a form re-encoded decodes to another number of fields")
    } catch {
        preconditionFailure("a form re-encoded does not decode: \(error)")
    }
    return 0
}
