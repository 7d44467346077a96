/// Why a request's parameters cannot be read (``IOPForm/decode(query:contentType:body:)``).
/// The descriptions name what is wrong, never a value: a body may carry tokens.
public enum IOPFormError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `multipart/form-data` without a `boundary` parameter.
    case missingBoundary
    /// A boundary longer than 70 characters or with characters a header cannot carry.
    case invalidBoundary
    /// A multipart body that never reaches its closing delimiter (`--boundary--`): cut short, or not multipart.
    case unterminatedMultipart
    /// A part whose headers do not parse, or do not end before the next delimiter.
    case malformedPart
    /// A part without a `Content-Disposition` header naming it (`form-data; name="…"`).
    case partWithoutName
    /// More fields and files together than the limit.
    case tooManyFields(limit: Int)

    public var description: String {
        switch self {
        case .missingBoundary:
            "the multipart/form-data body has no boundary: the Content-Type must name one (boundary=…)"
        case .invalidBoundary:
            "the multipart boundary is longer than 70 characters or holds characters other than printable ASCII"
        case .unterminatedMultipart:
            "the multipart body does not end with its closing boundary: it was cut short or is not multipart"
        case .malformedPart:
            "a part of the multipart body has headers that do not parse or do not end with an empty line"
        case .partWithoutName:
            "a part of the multipart body has no Content-Disposition name: every part must be form-data; name=\"…\""
        case .tooManyFields(let limit):
            "the request carries more than \(limit) parameters (fields and files together)"
        }
    }
}
