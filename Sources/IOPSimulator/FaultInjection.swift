/// How often the simulator injects each kind of fault.
///
/// One uniform draw from the simulator's seeded generator per request picks at
/// most one fault, so the probabilities add up: `[.http503: 0.1, .throttled: 0.2]`
/// fails 30% of requests. Scripted faults (``IOPSimulator/injectFaults(_:count:)``)
/// take precedence over these.
public struct FaultInjection: Sendable, Equatable {
    /// The probability of each kind per request; kinds not listed never occur.
    /// The sum should not exceed 1 (anything beyond is never reached).
    public var probabilities: [FaultKind: Double]

    /// - Parameter probabilities: The probability of each kind per request.
    public init(probabilities: [FaultKind: Double] = [:]) {
        self.probabilities = probabilities
    }

    /// No faults.
    public static let none = FaultInjection()

    /// Fails `rate` of all requests, spread evenly over `kinds`.
    /// - Parameters:
    ///   - rate: The share of requests that fail, `0...1`.
    ///   - kinds: The kinds to spread it over; by default every kind without effect.
    public static func uniform(rate: Double, over kinds: [FaultKind] = FaultKind.withoutEffect) -> FaultInjection {
        let unique = Array(Set(kinds))
        guard !unique.isEmpty else { return .none }
        let each = min(max(rate, 0), 1) / Double(unique.count)
        return FaultInjection(probabilities: Dictionary(uniqueKeysWithValues: unique.map { ($0, each) }))
    }

    /// Picks a kind for a uniform draw `u` in `0..<1`, walking the kinds in a
    /// fixed order so the same seed gives the same faults.
    func pick(_ u: Double) -> FaultKind? {
        var cumulative = 0.0
        for kind in FaultKind.allCases {
            guard let probability = probabilities[kind], probability > 0 else { continue }
            cumulative += probability
            if u < cumulative { return kind }
        }
        return nil
    }
}
