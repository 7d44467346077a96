/// The two calls the daemon and the CLI make to the IOP gateway.
///
/// Implementations throw ``GatewayFailure`` and nothing else, so every failure
/// arrives classified.
public protocol TokenGateway: Sendable {
    /// `/auth/token/refresh`: sends `refreshToken` once; the gateway rotates it.
    func refresh(refreshToken: Secret) async throws(GatewayFailure) -> TokenGrant

    /// `/auth/token/create`: exchanges a one-use authorization code.
    func createToken(code: String) async throws(GatewayFailure) -> TokenGrant
}
