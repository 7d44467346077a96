import TokenKeeperCore

/// What a proxy path asks for: `/<app>/rest/<api path>`, `/<app>/sync`, or
/// the same without the app (`/rest/…`, `/sync`) for a client of one app.
struct ProxyRoute: Sendable, Equatable {
    enum Style: Sendable, Equatable {
        /// An API named by its path (`/aliexpress/solution/order/get`), signed with the path.
        case rest(api: String)
        /// The `/sync` endpoint: the API is the `method` parameter, signed without a path.
        case sync
    }

    /// The app the path names; nil for `/rest/…` and `/sync`.
    var app: AppName?
    var style: Style

    /// The API path the signature covers: the REST path, or nothing for `/sync`.
    var signedPath: String {
        switch style {
        case .rest(let api): api
        case .sync: ""
        }
    }

    init(app: AppName?, style: Style) {
        self.app = app
        self.style = style
    }

    /// Parses a request's path; nil for anything else (a path with other
    /// characters than an API path has, `..`, an empty API).
    init?(path: String) {
        let allowed = path.utf8.allSatisfy { byte in
            (0x61...0x7A).contains(byte) || (0x41...0x5A).contains(byte) || (0x30...0x39).contains(byte)
                || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: ".")
        }
        guard allowed, path.hasPrefix("/"), path.utf8.count <= 512 else { return nil }
        var segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard !segments.contains(where: { $0 == ".." || $0 == "." }) else { return nil }
        if let first = segments.first, first != "rest", first != "sync" {
            guard let app = AppName(rawValue: String(first)) else { return nil }
            self.app = app
            segments = segments.dropFirst()
        } else {
            app = nil
        }
        switch segments.first {
        case "sync" where segments.count == 1:
            style = .sync
        case "rest":
            let api = segments.dropFirst()
            guard !api.isEmpty, !api.contains(where: \.isEmpty) else { return nil }
            style = .rest(api: "/" + api.joined(separator: "/"))
        default:
            return nil
        }
    }
}
