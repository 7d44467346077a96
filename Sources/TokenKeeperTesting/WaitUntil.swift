public import Testing

/// Waits (in real time, bounded) until `condition` holds; records an issue if
/// it never does.
public func waitUntil(
    _ description: String, timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var spins = 0
    while try await !condition() {
        guard clock.now < deadline else {
            Issue.record("timed out waiting until \(description)", sourceLocation: sourceLocation)
            return
        }
        spins += 1
        if spins < 100 { await Task.yield() } else { try await Task.sleep(for: .milliseconds(1)) }
    }
}
