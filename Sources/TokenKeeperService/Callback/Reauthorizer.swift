import Foundation
import Logging
import TokenKeeperCore
import TokenKeeperHTTP

/// The callback listener's one route: the gateway sends the seller's browser
/// here with `code` and our `state` after the seller logs in. The state must
/// be ours, unexpired and unused; the code is exchanged through
/// `/auth/token/create` and the seller stored `active` (a `reactivated`
/// event follows for a seller that needed it). Every refusal is a plain 400
/// page and one log line, with nothing stored.
struct Reauthorizer: Sendable {
    let store: any OperatorStore
    /// The app whose sellers this callback authorizes (its gateway, its accounts).
    var app: AppName = .default
    let gateway: any TokenGateway
    let signer: AuthorizationStateSigner
    let stateTTL: Duration
    let policy: RefreshPolicy
    let storageDirectory: String
    let clock: any WallClock
    let logger: Logger
    /// Code exchanges allowed now (a share of the app's call rate).
    var budget = ExchangeBudget(rate: { nil })
    /// Called after a seller was stored (the daemon rings the notifier).
    var onStored: @Sendable (String) -> Void = { _ in }
    /// A link whose code could not be exchanged works again, this many times;
    /// then it is spent (one link must not call the gateway without end).
    static let maxReleases = 2

    func handle(_ query: [String: String]) async -> HTTPReply {
        var logger = self.logger
        let now = clock.now()
        let state: AuthorizationState
        switch signer.decode(query["state"], now: now, ttl: stateTTL) {
        case .success(let decoded): state = decoded
        case .failure(let rejection):
            // Nothing a stranger sent is logged: only why it was refused.
            logger.warning("callback refused", metadata: ["reason": "\(rejection)"])
            return .page(400, "Refused: \(rejection). Nothing was changed.")
        }
        logger[metadataKey: "seller_id"] = "\(state.sellerID)"
        guard state.app == app else {
            // A link of one app came back to another app's callback path:
            // its code belongs to the other app's key.
            logger.warning(
                "callback refused: the link was made for another app", metadata: ["link_app": "\(state.app)"])
            return .page(
                400,
                "Refused: this link was made for app \(state.app), not \(app); open the link tokenkeeper made as it is. "
                    + "Nothing was changed.")
        }
        if let error = query["error"] {
            // The seller declined, or the gateway refused the app: nothing to
            // exchange, and the link still works.
            logger.warning(
                "callback: the gateway reported an authorization error",
                metadata: ["error": "\(error.prefix(100))"])
            return .page(400, "Not authorized: the marketplace answered '\(error.prefix(100))'. Nothing was changed.")
        }
        guard let code = query["code"]?.trimmingCharacters(in: .whitespaces), !code.isEmpty else {
            logger.warning("callback refused: no code")
            return .page(400, "Refused: the link carries no authorization code. Nothing was changed.")
        }
        guard budget.tryTake() else {
            logger.warning("callback refused: code exchanges are over their share of the app's call rate")
            return .page(
                503, "Too many authorizations at once; open the same link again in a minute. Nothing was changed.")
        }
        do {
            guard try await store.consumeState(nonce: state.nonce, expiresAt: state.issuedAt + stateTTL, now: now)
            else {
                let rejection = AuthorizationState.Rejection.replayed(sellerID: state.sellerID)
                logger.warning("callback refused", metadata: ["reason": "\(rejection)"])
                return .page(400, "Refused: \(rejection). Nothing was changed.")
            }
        } catch {
            logger.error("callback: the store cannot be written", metadata: ["error": "\(error)"])
            return .page(503, "tokenkeeper cannot store anything right now; open the same link again in a few minutes.")
        }
        let grant: TokenGrant
        do throws(GatewayFailure) {
            grant = try await gateway.createToken(code: code)
        } catch {
            // The code was not turned into tokens: the link may be used
            // again, a few times.
            let released = (try? await store.releaseState(nonce: state.nonce, maxReleases: Self.maxReleases)) ?? false
            logger.warning(
                "callback: the code could not be exchanged",
                metadata: ["error": "\(error)", "link": released ? "usable again" : "spent"])
            guard released else {
                return .page(
                    400,
                    "The authorization code could not be exchanged (\(error.code)), and this link has been tried too "
                        + "often: ask for a new one (tokenkeeper authorize-url --seller \(state.sellerID)).")
            }
            if error.isUnknownCode || error.failureClass == .accountRejected {
                return .page(
                    400, "The authorization code was refused (\(error.code)); open the same link again to log in anew.")
            }
            return .page(
                502, "The marketplace could not be reached (\(error.code)); open the same link again in a few minutes.")
        }
        var random = SystemRandomNumberGenerator()
        let nextRefresh = policy.nextRefresh(after: grant, using: &random)
        do {
            // A Lazada account lists its sellers in any order: the link's
            // seller among them is the same account.
            if grant.sellerID == state.sellerID
                || grant.profile.ventures.contains(where: { $0.sellerID == state.sellerID })
            {
                _ = try await store.enroll(app: app, grant: grant, nextRefreshAt: nextRefresh, now: clock.now())
            } else {
                // Someone logged in as another seller than the link was made
                // for: that seller is stored if new or in need of it, never
                // over a live account of its own.
                logger.warning(
                    "callback: the code belongs to another seller than the link was made for",
                    metadata: ["code_seller_id": "\(grant.sellerID)"])
                guard
                    try await store.enrollUnlessManaged(
                        app: app, grant: grant, nextRefreshAt: nextRefresh, now: clock.now())
                        != nil
                else {
                    // Kept all the same (the new authorization may have ended
                    // the stored token), and the link works again.
                    GrantSalvage.saveReporting(
                        grant, account: AccountKey(app: app, sellerID: grant.sellerID), replacing: nil,
                        directory: storageDirectory, logger: logger)
                    _ = try? await store.releaseState(nonce: state.nonce, maxReleases: Self.maxReleases)
                    return .page(
                        409,
                        "This login was for seller \(grant.sellerID), not \(state.sellerID), and tokenkeeper already "
                            + "keeps seller \(grant.sellerID) alive: nothing was changed. Log in as seller "
                            + "\(state.sellerID) with the same link.")
                }
            }
        } catch {
            // The code is spent: the tokens must not be lost with it.
            GrantSalvage.saveReporting(
                grant, account: AccountKey(app: app, sellerID: grant.sellerID), replacing: nil,
                directory: storageDirectory, logger: logger)
            logger.critical("callback: the new tokens could not be stored", metadata: ["error": "\(error)"])
            return .page(
                500, "Authorized, but tokenkeeper could not store the tokens; the operator has been told (see the log)."
            )
        }
        onStored(grant.sellerID)
        logger.notice("callback: seller authorized and active", metadata: ["stored_seller_id": "\(grant.sellerID)"])
        return .page(200, "Authorized: seller \(grant.sellerID) is active again. You can close this page.")
    }
}
