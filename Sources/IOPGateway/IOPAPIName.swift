/// What an API name says about the call.
public enum IOPAPIName {
    /// The token APIs (`/auth/token/create`, `/auth/token/refresh`, and
    /// every other under `/auth/`), by path or by a `/sync` call's `method`
    /// (`auth.token.create`): they hand out tokens, and only tokenkeeper
    /// itself may call them.
    public static func isTokenAPI(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return lowered.hasPrefix("/auth/") || lowered == "/auth" || lowered.hasPrefix("auth.")
            || lowered.hasPrefix("/auth.") || lowered.contains("/auth/token")
    }
}
