import IOPSimulator
import TokenKeeperCore

/// Rotations the gateway made for sellers due at once.
struct Drain: CustomStringConvertible {
    var rotations: Int
    /// From the first rotation seen to the last.
    var seconds: Double

    var perSecond: Double { seconds > 0 ? Double(rotations) / seconds : 0 }

    var rate: String { Figure.format(perSecond, decimals: 0) + "/s" }

    var description: String {
        "\(Figure.format(rotations)) in \(Figure.format(seconds, decimals: 2)) s"
    }
}

extension Rig {
    /// Imports `file` beside the running daemon and waits until the gateway
    /// has rotated a refresh token for each of its `sellers`.
    func importAndDrain(_ file: String, sellers: Int) async throws -> Drain {
        let baseline = simulator.counters.rotations
        let importer = try startImport(file)
        let drain = try await drain(sellers, after: baseline)
        try await succeeded(importer, name: "import")
        return drain
    }

    /// Waits, looking every 5 ms, until `expected` rotations beyond `baseline`
    /// have happened or none has for `stall`; a stalled drain is returned as far as it got.
    func drain(_ expected: Int, after baseline: Int, stall: Duration = .seconds(60)) async throws -> Drain {
        let started = ContinuousClock.now
        var first: ContinuousClock.Instant?
        var last = started
        var seen = 0
        while seen < expected {
            try await Task.sleep(for: .milliseconds(5))
            let now = ContinuousClock.now
            let rotated = simulator.counters.rotations - baseline
            if rotated > seen {
                if first == nil { first = now }
                seen = rotated
                last = now
            } else if now - last > stall {
                break
            }
        }
        return Drain(rotations: seen, seconds: first.map { (last - $0).seconds } ?? 0)
    }
}
