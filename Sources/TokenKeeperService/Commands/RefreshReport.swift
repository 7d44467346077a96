import IOPGateway
import RefreshScheduler
import TokenKeeperCore

/// What `refresh` prints per seller, and the exit code it earns.
enum RefreshReport {
    static func describe(_ outcome: RefreshOutcome, of sellerID: String) -> (String, CommandOutcome) {
        switch outcome {
        case .refreshed(let requestID, let nextDue, let isFinalGrant):
            var line = "\(sellerID) refreshed; next refresh \(nextDue)"
            if let requestID { line += " (request_id \(requestID))" }
            if isFinalGrant { line += "; the refresh token cannot be used again: the seller must authorize again" }
            return (line, .success)
        case .skipped(.tokenChanged, _):
            return ("\(sellerID) was refreshed by another process meanwhile", .success)
        case .skipped(.notDue, let nextDue):
            return ("\(sellerID) not due\(nextDue.map { "; next refresh \($0)" } ?? "")", .success)
        case .skipped(.inactive, _):
            return ("\(sellerID) is not active ('tokenkeeper list' says why)", .failure)
        case .skipped(.awaitingExpiry, _):
            return ("\(sellerID): its refresh token can no longer be used; the seller must authorize again", .failure)
        case .skipped(.heldBack, _):
            return ("\(sellerID) held back: the gateway rejects our configuration", .configuration)
        case .failed(let failure, let retryAt):
            let unreachable = [
                IOPFailureCode.connectionFailed, IOPFailureCode.timeout, IOPFailureCode.tlsFailed,
            ].contains(failure.code)
            return (
                "\(sellerID) failed: \(failure); the account keeps its token (the daemon retries at \(retryAt))",
                unreachable ? .unavailable : .failure
            )
        case .configurationRejected(let failure):
            return (
                "\(sellerID): the gateway rejected our configuration: \(failure)"
                    + ConfigurationHint.forCode(failure.code),
                .configuration
            )
        case .reauthRequired(let reason, let requestID):
            return (
                "\(sellerID) needs re-authorization (\(reason)\(requestID.map { ", request_id \($0)" } ?? "")): "
                    + "run 'tokenkeeper add --code CODE'", .failure
            )
        case .heldByBreaker(let failure):
            return (
                "\(sellerID): refresh token rejected (\(failure.code)) while the gateway rejects many sellers at once; "
                    + "not marked, the account keeps its token", .failure
            )
        case .busy(let until):
            return ("\(sellerID) is being refreshed by another process (lease until \(until))", .failure)
        case .storeFailed(let message, _):
            return ("\(sellerID): storing the new tokens failed: \(message)", .failure)
        case .notFound:
            return ("no account for seller \(sellerID)", .failure)
        case .notAttempted:
            return ("\(sellerID) was not attempted", .failure)
        }
    }

    /// The exit code of several outcomes: configuration beats unreachable beats failure.
    static func worse(_ lhs: CommandOutcome, _ rhs: CommandOutcome) -> CommandOutcome {
        let rank: [Int32: Int] = [0: 0, 1: 1, 69: 2, 78: 3]
        return (rank[rhs.exitCode] ?? 1) > (rank[lhs.exitCode] ?? 1) ? rhs : lhs
    }
}
