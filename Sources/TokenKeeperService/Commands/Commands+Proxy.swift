import Foundation
import TokenKeeperCore

#if canImport(Glibc)
import Glibc
#endif

extension Commands {
    /// `tokenkeeper proxy-client new NAME`: a fresh key and secret for a
    /// reader of the signing proxy, and the lines to add. The secret is
    /// printed once (or, with `--secret-file`, written there with mode 0600
    /// and not printed); tokenkeeper keeps no copy of its own.
    public static func newProxyClient(name: String, secretFile: String?, listen: String?) -> CommandOutcome {
        if let problem = AppName.problem(with: name) {
            Console.error(
                "tokenkeeper: '\(name)' is not a client name: \(problem.replacingOccurrences(of: "an app name", with: "a name")) "
                    + "(it names the client in the configuration, the metrics and the credential proxy_NAME)")
            return .usage
        }
        var generator = SystemRandomNumberGenerator()
        let secret = Self.randomText(bytes: 32, using: &generator)
        let key = "\(name)-" + String(UInt32.random(in: 0...UInt32.max, using: &generator), radix: 16)
        let secretPath = secretFile ?? "/etc/tokenkeeper/proxy-\(name).secret"
        if let secretFile {
            guard Self.writeSecret(secret, to: secretFile) else { return .failure }
        }
        let url = listen.map { $0.hasPrefix("unix:") ? $0 : "http://\($0)" } ?? "http://127.0.0.1:8902"
        var lines = ["A new proxy client, \(name)."]
        if secretFile == nil {
            lines += [
                "", "Its secret (shown once; tokenkeeper keeps no copy):", "", "  \(secret)", "",
                "1. Save it where only tokenkeeper (and the reader) can read it, e.g.:",
                "     umask 077; cat > \(secretPath)     # paste the secret, then Ctrl-D",
                "     chown tokenkeeper: \(secretPath)",
                "   (or as a systemd credential: LoadCredential=proxy_\(name):\(secretPath))",
            ]
        } else {
            lines += ["", "1. Its secret is in \(secretPath) (mode 0600); hand it to the reader."]
        }
        lines += [
            "2. Add to the configuration:", "",
            "proxy:",
            "  clients:",
            "    \(name):",
            "      key: \(key)",
            "      secret_file: \(secretPath)",
            "      # apps: [ae]                 # the apps it may call for (default: every app)",
            "      # sellers: [\"1001\", \"1002\"]  # the sellers it may call for (default: every seller)",
            "      # max_calls_per_second: 5    # its own cap (default: the app's budget only)",
            "",
            "3. Reload: systemctl reload tokenkeeper (a restart instead the first time: proxy.listen,",
            "   and a new LoadCredential=, are read at start).",
            "4. The reader's SDK: server URL \(url)/<app>/rest, app key \(key), app secret the secret above,",
            "   and the seller id where the access token would go (docs/PROXY.md).",
        ]
        Console.out(lines.joined(separator: "\n"))
        return .success
    }

    /// `bytes` random bytes as base64url without padding.
    static func randomText(bytes: Int, using generator: inout some RandomNumberGenerator) -> String {
        let data = Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
        return data.base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Creates `path` with mode 0600 holding `secret`; refuses to replace a file.
    private static func writeSecret(_ secret: String, to path: String) -> Bool {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            let reason =
                errno == EEXIST ? "it exists (a secret is never overwritten)" : String(cString: strerror(errno))
            Console.error("tokenkeeper: cannot create \(path): \(reason)")
            return false
        }
        defer { close(descriptor) }
        let bytes = Array((secret + "\n").utf8)
        guard write(descriptor, bytes, bytes.count) == bytes.count else {
            Console.error("tokenkeeper: cannot write \(path): \(String(cString: strerror(errno)))")
            return false
        }
        return true
    }
}
