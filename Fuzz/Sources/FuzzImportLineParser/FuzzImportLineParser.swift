import TokenKeeperService

// The input is an import file: decoded and cut into lines as `tokenkeeper
// import` does, each line parsed. Refusals are expected; a crash is the finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        do {
            _ = try ImportLineParser.parse(line, number: index + 1)
        } catch {
            _ = error.description
        }
    }
    return 0
}
