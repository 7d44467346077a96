import Foundation
import Testing

@testable import TokenKeeperService

/// The fast reader of import lines and JSONSerialization must agree on every
/// line the fast one accepts; on the rest the fast one must step aside.
@Suite struct FlatJSONObjectTests {
    static let agreeing: [String] = [
        #"{"seller_id":"1001","refresh_token":"RT-1"}"#,
        #"  { "seller_id" : "1001" , "refresh_token" : "RT-1" , "expire_time" : 1790000000000 }  "#,
        #"{"seller_id":2000001234,"refresh_token":"r","user_id":-42,"account_id":null}"#,
        #"{"seller_id":"a\"b\\c\/d\b\f\n\r\t","refresh_token":"\u00e9\u4e2d\ud83d\ude00"}"#,
        #"{"seller_id":"ü中😀","refresh_token":"x","seller_id":"last wins"}"#,
        #"{}"#,
        #"{"expire_time":9007199254740993,"big":9223372036854775807,"small":-9223372036854775808}"#,
        #"{"nul":"a\u0000b","refresh_token":""}"#,
    ]

    static let steppingAside: [String] = [
        #"{"expire_time":1.79e12}"#, #"{"expire_time":1790000000000.0}"#, #"{"x":true}"#, #"{"x":false}"#,
        #"{"x":0}"#, #"{"x":-0}"#, #"{"x":01}"#, #"{"x":{"y":1}}"#, #"{"x":[1]}"#, #"{"x":"\ud800"}"#,
        #"{"x":"\udc00"}"#, #"{"x":"\q"}"#, #"{"x":"a"} trailing"#, #"{"x":"a",}"#, #"{"x" "a"}"#, "{\"x\":\"a\tb\"}",
        #"[1,2]"#, #""text""#, #"{"x":99999999999999999999}"#, #"{"x":"unterminated}"#, #"{"x":nul}"#, "",
    ]

    @Test(arguments: agreeing)
    func fastReaderAgreesWithJSONSerialization(line: String) throws {
        let fast = try #require(FlatJSONObject.parse(line[...]), "the fast reader stepped aside")
        let serialized = try ImportLineParser.serializedObject(line) { ImportLineError(line: 1, problem: $0) }
        #expect(fast == serialized)
    }

    @Test(arguments: steppingAside)
    func fastReaderStepsAsideForWhatItDoesNotRead(line: String) {
        #expect(FlatJSONObject.parse(line[...]) == nil)
    }

    /// Every line of the fuzzing corpus parses to the same record, or the
    /// same refusal, as through JSONSerialization alone.
    @Test func corpusLinesParseAlikeEitherWay() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus/FuzzImportLineParser")
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus.path)
        var lines = 0
        for file in files {
            let text = try String(contentsOf: corpus.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") {
                lines += 1
                guard let fast = FlatJSONObject.parse(line) else { continue }
                let serialized = try ImportLineParser.serializedObject(String(line)) {
                    ImportLineError(line: 1, problem: $0)
                }
                #expect(fast == serialized, "\(file): a line read differently")
            }
        }
        #expect(lines > 3)
    }
}
