/// The status of a seller account, as stored and as readers see it in
/// `tokens.status`.
public enum AccountStatus: String, Sendable, Codable, CaseIterable {
    /// The counts of every app added up, with every status present (zero
    /// where no account has it).
    public static func total(of counts: [AppName: [AccountStatus: Int]]) -> [AccountStatus: Int] {
        var total = Dictionary(uniqueKeysWithValues: allCases.map { ($0, 0) })
        for perApp in counts.values { total.merge(perApp, uniquingKeysWith: +) }
        return total
    }

    /// Refreshed by the daemon; its access token is usable while unexpired.
    case active
    /// The refresh token was rejected or has run out: the seller must authorize
    /// again (`tokenkeeper add --code`).
    case reauthRequired = "reauth_required"
    /// Switched off by an operator (`tokenkeeper disable`); not refreshed.
    case disabled
}

/// Reasons of our own for `status_reason`, beside the gateway's error codes.
public enum StatusReason {
    /// The gateway said `refresh_expires_in` 0 (a final grant) and the last
    /// access token has expired. (A refresh token past its validity by our
    /// clock alone is still sent once: the gateway's answer decides.)
    public static let refreshTokenExpired = "RefreshTokenExpired"
    /// The gateway rejected a refresh token right after a call with it whose
    /// answer was lost (a timeout or a broken connection after the request
    /// was sent): the gateway most likely rotated it and the new one never
    /// arrived. The seller did nothing wrong.
    public static let rotationLost = "RotationLost"
    /// An operator disabled the account.
    public static let disabledByOperator = "DisabledByOperator"
}
