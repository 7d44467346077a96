import Foundation
import IOPGateway
import RefreshScheduler
import Testing
import TokenKeeperCore
import TokenKeeperTesting

@testable import TokenKeeperService

/// `proxy:` and the apps' `api_url`/`api_urls` (issue 18).
@Suite struct ProxyConfigurationTests {
    static let configuration = """
        gateway:
          url: https://api-sg.aliexpress.com/rest
        apps:
          ae:
            key: "12345678"
          lazada:
            key: "100200"
            gateway:
              url: https://auth.lazada.com/rest
            api_urls:
              sg: https://api.lazada.sg/rest
              th: https://api.lazada.co.th/rest
        proxy:
          listen: 127.0.0.1:8902
          timeout_seconds: 20
          refresh_share: 0.3
          app_daily_calls:
            ae: 400000
          clients:
            orders:
              key: orders-key
              secret_file: /etc/tokenkeeper/proxy-orders.secret
              apps: [ae]
              sellers: ["1001", "1002"]
              max_calls_per_second: 5
            reports:
              key: reports-key
        """

    func load(_ text: String, environment: [String: String] = [:]) throws(ConfigurationError)
        -> TokenKeeperConfiguration
    {
        let scratch = try! ScratchDirectory()
        return try ConfigurationLoader(environment: environment).load(explicitPath: scratch.write("config.yaml", text))
    }

    @Test func clientsAppsAndURLsAreReadAsWritten() throws {
        let configuration = try load(Self.configuration)
        let proxy = configuration.proxy
        #expect(proxy.listen == "127.0.0.1:8902")
        #expect(proxy.timeoutSeconds == 20)
        #expect(proxy.refreshShare == 0.3)
        #expect(proxy.dailyCalls(for: "ae") == 400_000)
        #expect(proxy.dailyCalls(for: "lazada") == nil)
        #expect(proxy.clients.map(\.name) == ["orders", "reports"])
        let orders = try #require(proxy.clients.first)
        #expect(orders.key == "orders-key")
        #expect(orders.apps == ["ae"])
        #expect(orders.sellers == ["1001", "1002"])
        #expect(orders.maxCallsPerSecond == 5)
        #expect(proxy.clients[1].apps == nil && proxy.clients[1].sellers == nil)
        let ae = try #require(configuration.app(named: "ae"))
        #expect(ae.apiURL(country: nil) == "https://api-sg.aliexpress.com/rest", "the gateway's URL by default")
        let lazada = try #require(configuration.app(named: "lazada"))
        #expect(lazada.apiURL(country: "TH") == "https://api.lazada.co.th/rest")
        #expect(lazada.apiURL(country: "vn") == nil, "a country list without the country and no api_url")
    }

    @Test func mistakesAreRefusedByName() throws {
        let cases: [(String, String, String)] = [
            ("proxy:\n  listen: 0.0.0.0:8902\n  clients:\n    a:\n      key: k\n", "proxy.listen", "not a loopback"),
            ("proxy:\n  listen: 127.0.0.1:8902\n", "proxy.clients", "no client"),
            (
                "proxy:\n  clients:\n    a:\n      key: k\n    b:\n      key: k\n", "proxy.clients.b.key",
                "also client a"
            ),
            (
                "proxy:\n  clients:\n    a:\n      key: k\n      apps: [nope]\n", "proxy.clients.a.apps",
                "not configured"
            ),
            ("proxy:\n  clients:\n    Bad:\n      key: k\n", "proxy.clients.Bad", "not a client name"),
            ("proxy:\n  clinets:\n    a:\n      key: k\n", "proxy.clinets", "unknown key"),
            ("proxy:\n  refresh_share: 0\n", "proxy.refresh_share", "out of range"),
            (
                "app:\n  key: \"1\"\n  api_urls:\n    singapore: https://x.example/rest\n", "app.api_urls.singapore",
                "country"
            ),
            ("app:\n  key: \"1\"\n  api_url: http://example.com/rest\n", "app.api_url", "plain http"),
            (
                "proxy:\n  listen: unix:relative.sock\n  clients:\n    a:\n      key: k\n", "proxy.listen",
                "absolute path"
            ),
            ("proxy:\n  socket_mode: \"999\"\n", "proxy.socket_mode", "octal"),
        ]
        for (text, key, problem) in cases {
            do {
                _ = try load(text.hasPrefix("app:") ? text : "app:\n  key: \"1\"\n" + text)
                Issue.record("\(key): accepted")
            } catch {
                #expect(error.description.contains(key), "\(error.description)")
                #expect(error.description.contains(problem), "\(error.description)")
            }
        }
    }

    @Test func aUnixSocketAndItsModeAreTaken() throws {
        let configuration = try load(
            "app:\n  key: \"1\"\nproxy:\n  listen: unix:/run/tokenkeeper/proxy.sock\n  socket_mode: \"0600\"\n"
                + "  clients:\n    a:\n      key: k\n")
        #expect(configuration.proxy.socketMode == 0o600)
        #expect(try ProxyAddress(configuration.proxy.listen!, key: "") == .unix(path: "/run/tokenkeeper/proxy.sock"))
    }

    @Test func pathsNameTheAppAndTheAPI() {
        #expect(
            ProxyRoute(path: "/ae/rest/aliexpress/solution/order/get")
                == ProxyRoute(app: "ae", style: .rest(api: "/aliexpress/solution/order/get")))
        #expect(ProxyRoute(path: "/rest/orders/get") == ProxyRoute(app: nil, style: .rest(api: "/orders/get")))
        #expect(ProxyRoute(path: "/ae/sync") == ProxyRoute(app: "ae", style: .sync))
        #expect(ProxyRoute(path: "/sync")?.style == .sync)
        for bad in [
            "/", "/ae", "/ae/rest", "/ae/rest/", "/ae/rest/../x", "/ae/rest/a%2Fb", "/Ae/rest/x", "/ae/other/x",
            "/ae/rest//x", "/ae/sync/x",
        ] {
            #expect(ProxyRoute(path: bad) == nil, "\(bad)")
        }
    }

    @Test func aClientsSecretComesFromItsCredentialFirstAndMustBeLongEnough() throws {
        let scratch = try ScratchDirectory()
        var client = TokenKeeperConfiguration.ProxyClient(name: "orders")
        client.secretFile = scratch.write("orders.secret", "a-secret-from-the-file-0123456789\n", mode: 0o600)
        let credentials = scratch.path + "/credentials"
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: true)
        let fromFile = try AppSecretLoader(environment: [:]).proxyClientSecret(for: client)
        #expect(fromFile.exposedValue == "a-secret-from-the-file-0123456789")
        _ = FileManager.default.createFile(
            atPath: credentials + "/proxy_orders", contents: Data("a-secret-from-systemd-0123456789".utf8))
        let fromCredential = try AppSecretLoader(environment: ["CREDENTIALS_DIRECTORY": credentials])
            .proxyClientSecret(for: client)
        #expect(fromCredential.exposedValue == "a-secret-from-systemd-0123456789")
        client.secretFile = scratch.write("short.secret", "short\n", mode: 0o600)
        #expect(throws: ConfigurationError.self) {
            try AppSecretLoader(environment: [:]).proxyClientSecret(for: client)
        }
        client.secretFile = scratch.write("open.secret", "an-open-secret-0123456789abcdef\n", mode: 0o644)
        #expect(throws: ConfigurationError.self) {
            try AppSecretLoader(environment: [:]).proxyClientSecret(for: client)
        }
        client.secretFile = nil
        do {
            _ = try AppSecretLoader(environment: [:]).proxyClientSecret(for: client)
            Issue.record("a client without a secret was accepted")
        } catch {
            #expect(error.description.contains("proxy-client new orders"), "\(error.description)")
        }
    }

    @Test func theGatewaysErrorIsReadInEitherShape() {
        let plain = Array(#"{"type":"ISV","code":"IllegalAccessToken","message":"expired","request_id":"1"}"#.utf8)
        #expect(ProxyForwarder.errorCode(in: plain) == ("IllegalAccessToken", "expired"))
        let wrapped = Array(#"{"error_response":{"code":"ApiCallLimit","msg":"ban will last 3 seconds"}}"#.utf8)
        #expect(ProxyForwarder.errorCode(in: wrapped) == ("ApiCallLimit", "ban will last 3 seconds"))
        let success = Array(#"{"code":"0","data":{"note":"IllegalAccessToken in a product title"}}"#.utf8)
        #expect(ProxyForwarder.errorCode(in: success) == (nil, nil))
        #expect(ProxyForwarder.errorCode(in: Array("<html>CallLimit</html>".utf8)) == (nil, nil))
    }

    @Test func theTokenAPIsAreKnownByPathAndByMethod() {
        for name in ["/auth/token/refresh", "/auth/token/create", "/AUTH/token/security/create", "auth.token.create"] {
            #expect(IOPAPIName.isTokenAPI(name), "\(name)")
        }
        for name in ["/aliexpress/solution/order/get", "/orders/get", "aliexpress.solution.order.get", "/author/get"] {
            #expect(!IOPAPIName.isTokenAPI(name), "\(name)")
        }
    }
}
