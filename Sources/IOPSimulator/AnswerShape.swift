/// The shape of the gateway's success answers to `/auth/token/create` and
/// `/auth/token/refresh`: the marketplaces share the protocol and its
/// signing, not the fields of a grant.
public enum AnswerShape: String, Sendable, Equatable, CaseIterable {
    /// AliExpress's, as in the vendor's sample: the seller at the top
    /// (`seller_id`, `user_id`, `user_nick`, …) and absolute times
    /// (`expire_time`, `refresh_token_valid_time`) beside the lifetimes.
    case aliExpress
    /// Lazada's: no top-level seller fields and no absolute times, but the
    /// account's `country` (`cb` for a cross-border account) and
    /// `country_user_info`, the sellers the token serves, one per country
    /// (``SimulatedSeller/ventures``).
    case lazada
}
