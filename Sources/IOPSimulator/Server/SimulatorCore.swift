import NIOCore

/// The state the NIO handlers share: the gateway behind one lock, and the
/// answers being held back (slow faults, latency) so a test can release them.
///
/// Handlers call in synchronously from their event loops; the lock is held only
/// for in-memory bookkeeping, never across I/O.
final class SimulatorCore: Sendable {
    let gateway: Locked<SimulatedGateway>
    let maxRequestBodyBytes: Int
    private let heldAnswers = Locked<[UInt64: @Sendable () -> Void]>([:])

    init(configuration: SimulatorConfiguration) {
        gateway = Locked(SimulatedGateway(configuration: configuration))
        maxRequestBodyBytes = configuration.maxRequestBodyBytes
    }

    func answer(_ request: GatewayRequest) -> GatewayAnswer {
        gateway.withLock { gateway in
            var answer = gateway.answer(request)
            answer.closesConnection = gateway.behavior.closesConnectionAfterAnswer
            return answer
        }
    }

    func finish(_ ticket: RequestTicket, delivered: Bool) {
        gateway.withLock { $0.finish(ticket, delivered: delivered) }
    }

    /// Registers a held answer; `release` sends it at once (on its event loop).
    func hold(_ number: UInt64, release: @escaping @Sendable () -> Void) {
        heldAnswers.withLock { $0[number] = release }
    }

    func unhold(_ number: UInt64) {
        _ = heldAnswers.withLock { $0.removeValue(forKey: number) }
    }

    var heldAnswerCount: Int {
        heldAnswers.withLock { $0.count }
    }

    func releaseHeldAnswers() {
        let releases = heldAnswers.withLock { held in
            let all = Array(held.values)
            held.removeAll()
            return all
        }
        for release in releases { release() }
    }
}

/// The open connections, so that shutdown can close them (a held answer would
/// otherwise keep a connection open for its whole delay).
final class ChannelRegistry: Sendable {
    private let channels = Locked<[ObjectIdentifier: any Channel]>([:])

    /// Tracks `channel` until it closes.
    func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLock { $0.removeValue(forKey: id) }
        }
    }

    func all() -> [any Channel] {
        channels.withLock { Array($0.values) }
    }
}
