import Foundation
import Testing

@Suite("The alert rules, as Prometheus's own tool judges them")
struct AlertRulesTests {
    static let monitoring = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("monitoring")

    @Test("promtool check rules passes on monitoring/tokenkeeper.rules.yml, and promtool test rules on its tests")
    func rulesPass() throws {
        let check = try PromTool.run([
            "check", "rules", Self.monitoring.appendingPathComponent("tokenkeeper.rules.yml").path,
        ])
        #expect(check.status == 0, "\(check.output)")
        let test = try PromTool.run([
            "test", "rules", Self.monitoring.appendingPathComponent("tokenkeeper.rules.test.yml").path,
        ])
        #expect(test.status == 0, "\(test.output)")
    }
}
