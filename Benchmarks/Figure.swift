import Foundation
import Synchronization

/// What a figure must be to pass.
enum Target: Sendable {
    case atMost(Double)
    case below(Double)
    case atLeast(Double)
    case equal(Double)

    func holds(_ value: Double) -> Bool {
        switch self {
        case .atMost(let bound): value <= bound
        case .below(let bound): value < bound
        case .atLeast(let bound): value >= bound
        case .equal(let bound): value == bound
        }
    }

    func text(unit: String, decimals: Int) -> String {
        let (sign, bound) =
            switch self {
            case .atMost(let bound): ("≤", bound)
            case .below(let bound): ("<", bound)
            case .atLeast(let bound): ("≥", bound)
            case .equal(let bound): ("=", bound)
            }
        return "\(sign) \(Figure.format(bound, decimals: decimals))\(unit)"
    }
}

enum Verdict: String, Sendable {
    case pass = "PASS"
    case fail = "FAIL"
    /// A figure without a target.
    case info
    /// A figure with a target that could not be measured (the daemon does not expose it yet).
    case notAvailable = "n/a"
}

/// One measured figure, with the target it is held to (if any).
struct Figure: Sendable {
    var name: String
    /// Nil when it could not be measured.
    var value: Double?
    /// Printed right after the value, e.g. " s", " MiB", "/s".
    var unit = ""
    var decimals = 0
    var target: Target?
    /// How it was obtained, printed after the verdict: "(30,000 in 5.21 s)".
    var detail = ""

    var verdict: Verdict {
        guard let target else { return .info }
        guard let value else { return .notAvailable }
        return target.holds(value) ? .pass : .fail
    }

    var valueText: String { value.map { Self.format($0, decimals: decimals) + unit } ?? "n/a" }

    var targetText: String { target?.text(unit: unit, decimals: decimals) ?? "" }

    /// A count, thousands grouped.
    static func format(_ count: Int) -> String {
        format(Double(count), decimals: 0)
    }

    /// Thousands grouped for whole numbers, so that 1000000 reads as 1,000,000.
    static func format(_ value: Double, decimals: Int) -> String {
        guard decimals == 0, value.isFinite, abs(value) < 1e15 else {
            return String(format: "%.\(decimals)f", value)
        }
        let digits = String(Int64(value.rounded()).magnitude)
        var grouped = ""
        for (offset, digit) in digits.enumerated() {
            if offset > 0, (digits.count - offset) % 3 == 0 { grouped.append(",") }
            grouped.append(digit)
        }
        return (value < 0 ? "-" : "") + grouped
    }
}

/// Prints every figure as it comes, and the targets together at the end.
final class Report: Sendable {
    private struct State {
        var section = ""
        var figures: [(section: String, figure: Figure)] = []
    }

    private let state = Mutex(State())

    /// Prints `title`; the figures that follow are listed under `label` in the summary.
    func beginSection(_ title: String, label: String) {
        state.withLock { $0.section = label }
        print("\n== \(title)")
    }

    func record(_ figure: Figure) {
        state.withLock { $0.figures.append(($0.section, figure)) }
        print(Self.line(figure))
    }

    func record(_ figures: [Figure]) {
        for figure in figures { record(figure) }
    }

    /// A line that is not a figure (progress, a table).
    func note(_ text: String) {
        print("   " + text)
    }

    func printSummary() {
        let withTargets = state.withLock { $0.figures }.filter { $0.figure.target != nil }
        print("\n== Summary of targets")
        for (section, figure) in withTargets {
            print(
                Self.column(section, 12) + Self.column(figure.name, 52) + Self.column(figure.valueText, 16)
                    + Self.column(figure.targetText, 14) + figure.verdict.rawValue)
        }
        let verdicts = withTargets.map(\.figure.verdict)
        let counts = [Verdict.pass, .fail, .notAvailable].map { verdict in
            "\(verdicts.filter { $0 == verdict }.count) \(verdict.rawValue)"
        }
        print(counts.joined(separator: ", "))
    }

    private static func line(_ figure: Figure) -> String {
        var text = "   " + column(figure.name, 52) + column(figure.valueText, 16) + column(figure.targetText, 14)
        text += column(figure.verdict.rawValue, 6)
        if !figure.detail.isEmpty { text += " " + figure.detail }
        return text
    }

    private static func column(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text.padding(toLength: width, withPad: " ", startingAt: 0)
    }
}
