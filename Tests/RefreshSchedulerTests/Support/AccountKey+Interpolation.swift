import TokenKeeperCore

/// Lets a test write a seller of the default app as `"s\(index)"`, as it
/// writes `"s1"`. Only here: in the daemon an interpolated string must not
/// quietly become an account of the default app.
extension AccountKey: ExpressibleByStringInterpolation {}
