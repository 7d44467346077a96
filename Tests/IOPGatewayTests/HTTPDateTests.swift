import Testing
import TokenKeeperCore

@testable import IOPGateway

@Suite struct HTTPDateTests {
    @Test(arguments: [
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777_000),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Tue, 14 Nov 2023 22:13:20 GMT", 1_700_000_000_000),
        ("Thu, 29 Feb 2024 23:59:59 GMT", 1_709_251_199_000),
        ("Fri, 31 Dec 2100 12:00:00 GMT", 4_133_937_600_000),
        ("06 Nov 1994 08:49:37 GMT", 784_111_777_000),
        ("Sun,  06 nov 1994 08:49:37 UTC", 784_111_777_000),
    ])
    func parsesRFC1123Dates(text: String, milliseconds: Int64) {
        #expect(HTTPDate.parse(text) == Timestamp(millisecondsSince1970: milliseconds))
    }

    @Test(arguments: [
        "", "yesterday", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
        "Sun, 06 Nov 1994 08:49:37 +0200", "Sun, 32 Nov 1994 08:49:37 GMT", "Thu, 29 Feb 2023 00:00:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
    ])
    func refusesOtherForms(text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }
}
