import TokenKeeperCore

/// How a command given a seller id (and maybe `--app`) finds the account it
/// means: with `--app`, that app's; without, the one account with that seller
/// id, and a refusal naming the apps when several apps have one.
enum AccountResolution {
    /// The app `--app` names, checked; nil when not given.
    static func appName(_ text: String?) throws(CommandFailure) -> AppName? {
        guard let text else { return nil }
        guard let name = AppName(rawValue: text) else {
            throw CommandFailure(
                .usage,
                "--app \(text): \(AppName.problem(with: text) ?? "not an app name") (see 'apps:' in the configuration)")
        }
        return name
    }

    /// The key of the account `sellerID` names.
    /// - Throws: ``CommandFailure`` (exit 1) when no app has the seller,
    ///   (exit 64) when several have it and no app was named.
    static func key(
        sellerID: String, app: AppName?, in store: any ManagedAccountStore
    ) async throws(CommandFailure) -> AccountKey {
        if let app { return AccountKey(app: app, sellerID: sellerID) }
        let keys = try await storeCall("looking up seller \(sellerID)") {
            try await store.accountKeys(sellerID: sellerID)
        }
        switch keys.count {
        case 0:
            throw CommandFailure(.failure, "no account for seller \(sellerID) ('tokenkeeper list' shows them)")
        case 1:
            return keys[0]
        default:
            let apps = keys.map(\.app.rawValue).joined(separator: ", ")
            throw CommandFailure(
                .usage, "seller \(sellerID) is enrolled under several apps (\(apps)): name one with --app")
        }
    }
}
