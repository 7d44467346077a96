import Foundation
import SQLiteStore
import Testing
import TokenKeeperCore
import TokenKeeperHTTP
import TokenKeeperTesting

@testable import TokenKeeperService

/// The notify, callback and metrics keys: lists, addresses, and what must go together.
@Suite struct OperationsConfigurationTests {
    let scratch = try! ScratchDirectory()

    func load(_ yaml: String, environment: [String: String] = [:]) throws(ConfigurationError)
        -> TokenKeeperConfiguration
    {
        try ConfigurationLoader(environment: environment).load(explicitPath: scratch.write("config.yaml", yaml))
    }

    @Test func theHookIsAnArgvListFromAYAMLSequenceOrAJSONArrayInTheEnvironment() throws {
        let hook = scratch.write("hook.sh", "#!/bin/sh\n", mode: 0o755)
        let configuration = try load(
            """
            notify:
              command: [\(hook), --channel, "ops team"]
              command_timeout_seconds: 5
            """)
        #expect(configuration.notify.command == [hook, "--channel", "ops team"])
        #expect(configuration.notify.commandTimeoutSeconds == 5)
        let fromEnvironment = try load("", environment: ["TOKENKEEPER_NOTIFY_COMMAND": "[\"\(hook)\", \"-v\"]"])
        #expect(fromEnvironment.notify.command == [hook, "-v"])
        #expect(try load("notify:\n  command: \(hook)\n").notify.command == [hook])
    }

    @Test func aHookWrittenAsOneStringWithSpacesIsRefusedNotSplit() throws {
        let hook = scratch.write("hook.sh", "#!/bin/sh\n", mode: 0o755)
        #expect {
            try load("notify:\n  command: \"\(hook) --channel ops\"\n")
        } throws: { error in
            "\(error)".contains("notify.command") && "\(error)".contains("write it as a list")
        }
    }

    @Test func aHookThatIsNotAnAbsoluteExecutableIsRefused() throws {
        #expect { try load("notify:\n  command: [notify-team]\n") } throws: { "\($0)".contains("absolute path") }
        #expect { try load("notify:\n  command: [/nonexistent/hook]\n") } throws: { "\($0)".contains("not executable") }
    }

    @Test func listenersNeedHostAndPortAndTheCallbackNeedsTheRedirectURI() throws {
        let configuration = try load(
            """
            app:
              redirect_uri: https://tokens.example.com/aliexpress/callback
            callback:
              listen: 127.0.0.1:8423
            metrics:
              listen: "[::1]:9464"
            """)
        #expect(configuration.callback.listen == "127.0.0.1:8423")
        #expect(try ListenAddress("[::1]:9464", key: "metrics.listen") == ListenAddress(host: "::1", port: 9464))
        #expect(try ListenAddress(":9464", key: "metrics.listen").host == "127.0.0.1")
        #expect { try load("metrics:\n  listen: 127.0.0.1\n") } throws: { "\($0)".contains("metrics.listen") }
        #expect { try load("metrics:\n  listen: 127.0.0.1:70000\n") } throws: { "\($0)".contains("port") }
        #expect { try load("callback:\n  listen: 127.0.0.1:8423\n") } throws: { "\($0)".contains("app.redirect_uri") }
        #expect {
            try load(
                "app:\n  redirect_uri: https://x.example/cb\ncallback:\n  listen: 127.0.0.1:1\nmetrics:\n  listen: 127.0.0.1:1\n"
            )
        } throws: { "\($0)".contains("same address") }
    }

    @Test func aWebhookNeedsASigningSecretFromACredentialOrAPrivateFile() throws {
        let configuration = try load("notify:\n  webhook_url: https://hooks.example.com/tk\n")
        let loader = AppSecretLoader(environment: [:])
        #expect { try loader.webhookSecret(for: configuration) } throws: {
            "\($0)".contains("notify.webhook_secret_file")
        }
        let open = scratch.write("open_secret", "s3cret", mode: 0o644)
        var withFile = configuration
        withFile.notify.webhookSecretFile = open
        #expect { try loader.webhookSecret(for: withFile) } throws: { "\($0)".contains("chmod 600") }
        withFile.notify.webhookSecretFile = scratch.write("secret", "s3cret\n", mode: 0o600)
        #expect(try loader.webhookSecret(for: withFile)?.exposedValue == "s3cret")
        let credentials = try ScratchDirectory()
        credentials.write("webhook_secret", "from-systemd", mode: 0o400)
        #expect(
            try AppSecretLoader(environment: ["CREDENTIALS_DIRECTORY": credentials.path]).webhookSecret(for: withFile)?
                .exposedValue == "from-systemd")
        #expect(try loader.webhookSecret(for: try load("")) == nil, "no webhook, no secret needed")
        #expect { try load("notify:\n  webhook_url: ftp://x\n") } throws: { "\($0)".contains("notify.webhook_url") }
        #expect { try load("notify:\n  webhook_url: http://hooks.example.com/tk\n") } throws: {
            "\($0)".contains("notify.webhook_url") && "\($0)".contains("loopback")
        }
        for loopback in ["http://127.0.0.1:8080/tk", "http://[::1]:8080/tk", "http://localhost/tk"] {
            #expect(throws: Never.self, "\(loopback)") {
                try load("notify:\n  webhook_url: \(loopback)\n")
            }
        }
    }

    @Test func everyOperationsNumberHasARange() throws {
        for (key, value) in [
            ("notify.command_timeout_seconds", "0"), ("notify.retry_hours", "0.5"),
            ("notify.reauth_warning_days", "400"),
            ("notify.retry_initial_seconds", "0"), ("notify.reauth_check_seconds", "0"),
            ("callback.state_ttl_hours", "0"),
            ("notify.webhook_timeout_seconds", "1000"),
        ] {
            let parts = key.split(separator: ".")
            #expect { try load("\(parts[0]):\n  \(parts[1]): \(value)\n") } throws: { "\($0)".contains(key) }
        }
        let defaults = try load("")
        #expect(defaults.notify.reauthWarningDays == 7)
        #expect(defaults.notify.commandTimeoutSeconds == 10)
        #expect(defaults.notify.retryHours >= 24)
        #expect(defaults.callback.stateTTLHours == 72)
        #expect(defaults.callback.listen == nil && defaults.metrics.listen == nil, "listeners are opt-in")
    }
}

/// Signed authorization states.
@Suite struct AuthorizationStateTests {
    let signer = AuthorizationStateSigner(keyHex: AuthorizationStateSigner.makeKeyHex())
    let now = Timestamp(millisecondsSince1970: 1_800_000_000_000)
    let ttl: Duration = .seconds(72 * 3600)

    func issue(_ seller: String, at moment: Timestamp? = nil) -> (AuthorizationState, String) {
        var random = SystemRandomNumberGenerator()
        let state = AuthorizationState.issue(for: .seller(seller), at: moment ?? now, using: &random)
        return (state, signer.encode(state))
    }

    @Test func aStateRoundTripsWithItsSellerTimeAndNonce() throws {
        let (state, text) = issue("1001|odd")
        #expect(try signer.decode(text, now: now + .seconds(60), ttl: ttl).get() == state)
        #expect(state.nonce.count == 32)
        #expect(issue("1001").0.nonce != issue("1001").0.nonce)
        #expect(!text.contains("1001"), "opaque: base64url, not plain text")
        #expect(text.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) }, "safe in a URL as it is")
    }

    @Test func forgedTamperedMissingAndForeignStatesAreRefused() {
        let (_, text) = issue("1001")
        #expect(signer.decode(nil, now: now, ttl: ttl) == .failure(.missing))
        #expect(signer.decode("", now: now, ttl: ttl) == .failure(.missing))
        var tampered = Array(text)
        tampered[2] = tampered[2] == "A" ? "B" : "A"
        #expect(signer.decode(String(tampered), now: now, ttl: ttl) == .failure(.forged))
        #expect(signer.decode("garbage", now: now, ttl: ttl) == .failure(.forged))
        let other = AuthorizationStateSigner(keyHex: AuthorizationStateSigner.makeKeyHex())
        #expect(other.decode(text, now: now, ttl: ttl) == .failure(.forged), "another key's state")
    }

    @Test func expiredAndFutureStatesAreRefused() {
        let (_, text) = issue("1001")
        #expect(signer.decode(text, now: now + ttl, ttl: ttl).map(\.sellerID) == .success("1001"))
        #expect(
            signer.decode(text, now: now + ttl + .milliseconds(1), ttl: ttl) == .failure(.expired(sellerID: "1001")))
        let (_, future) = issue("1001", at: now + .seconds(3600))
        #expect(signer.decode(future, now: now, ttl: ttl) == .failure(.expired(sellerID: "1001")))
    }
}

/// The event JSON and the webhook signature.
@Suite struct EventPayloadTests {
    @Test func theSignatureIsHMACSHA256OfTheBodyInLowercaseHex() {
        // Computed independently: python3 -c "import hmac,hashlib; print(hmac.new(b'whsec-test-key',
        // b'{\"id\":7,\"kind\":\"reauth_required\"}', hashlib.sha256).hexdigest())"
        #expect(
            WebhookChannel.signature(of: "{\"id\":7,\"kind\":\"reauth_required\"}", secret: Secret("whsec-test-key"))
                == "sha256=2fc518153523aa38ceb95cf1093ff7bb289beb78b40c32c9b326b8f6d905694f")
    }

    @Test func aSellerEventCarriesItsFieldsAndLinkAndNeverMore() throws {
        let event = StoredEventFixture.make(kind: .reauthRequired, seller: "1001", detail: "IllegalRefreshToken")
        let text = EventPayload.render(
            event, uid: "u-1", reauthBy: Timestamp(millisecondsSince1970: 5),
            authorizeURL: "https://x.example/oauth/authorize?state=s")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(
            Set(object.keys) == [
                "id", "event_id", "kind", "app", "seller_id", "reason", "reauth_by", "at", "request_id",
                "authorize_url",
            ])
        #expect(object["app"] as? String == "default", "a seller's event names its app")
        #expect(object["id"] as? String == "u-1")
        #expect((object["event_id"] as? NSNumber)?.int64Value == 7)
        #expect(object["kind"] as? String == "reauth_required")
        #expect(object["reason"] as? String == "IllegalRefreshToken")
        #expect((object["reauth_by"] as? NSNumber)?.int64Value == 5)
        #expect(object["authorize_url"] as? String == "https://x.example/oauth/authorize?state=s")
        #expect(
            text
                == EventPayload.render(
                    event, uid: "u-1", reauthBy: Timestamp(millisecondsSince1970: 5),
                    authorizeURL: "https://x.example/oauth/authorize?state=s"), "stable bytes")
        let degraded = EventPayload.render(
            StoredEventFixture.make(kind: .degraded, seller: nil, detail: "storage: full"), uid: "u-2", reauthBy: nil,
            authorizeURL: "https://x.example/should-not-appear")
        #expect(!degraded.contains("should-not-appear"), "only seller kinds carry a link")
        #expect(degraded.contains("\"seller_id\":null"))
    }

    @Test func backoffDoublesWithJitterUpToTheCap() {
        var settings = EventNotifier.Settings()
        settings.retryInitial = .seconds(10)
        settings.retryMax = .seconds(300)
        let backoff = { (attempts: Int) -> Duration in
            var random = SeededRandom(seed: UInt64(attempts))
            return EventNotifierBackoff.delay(afterAttempts: attempts, settings: settings, random: &random)
        }
        #expect((5...10).contains(backoff(1).seconds))
        #expect((10...20).contains(backoff(2).seconds))
        #expect((40...80).contains(backoff(4).seconds))
        #expect((150...300).contains(backoff(20).seconds))
        #expect((150...300).contains(backoff(10_000).seconds), "no overflow")
    }
}

enum StoredEventFixture {
    static func make(kind: EventKind, seller: String?, detail: String?) -> StoredEvent {
        StoredEvent(
            id: 7, at: Timestamp(millisecondsSince1970: 1_800_000_000_000), app: seller == nil ? nil : .default,
            sellerID: seller, kind: kind,
            detail: detail,
            requestID: "req-1")
    }
}

@Suite struct HookEnvironmentTests {
    /// Seen failing: the hook inherited every app's `TOKENKEEPER_APPS_<NAME>_SECRET`
    /// and the PostgreSQL password, when only `TOKENKEEPER_APP_SECRET` was withheld.
    @Test func theHookInheritsNoSecretOfTheDaemon() {
        let daemon = [
            "TOKENKEEPER_APP_SECRET": "a", "TOKENKEEPER_APPS_LAZADA_SG_SECRET": "b",
            "TOKENKEEPER_STORAGE_POSTGRES_PASSWORD": "c", "TOKENKEEPER_READER_PASSWORD": "d",
            "CREDENTIALS_DIRECTORY": "/run/credentials/tokenkeeper.service", "NOTIFY_SOCKET": "/run/systemd/notify",
            "PATH": "/usr/bin", "LANG": "C.UTF-8", "TOKENKEEPER_CONFIG": "/etc/tokenkeeper/config.yaml",
        ]
        #expect(
            ExecHookChannel.inherited(from: daemon)
                == ["PATH": "/usr/bin", "LANG": "C.UTF-8", "TOKENKEEPER_CONFIG": "/etc/tokenkeeper/config.yaml"])
    }
}
