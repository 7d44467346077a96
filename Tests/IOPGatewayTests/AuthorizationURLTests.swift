import Testing
import TokenKeeperCore

@testable import IOPGateway

@Suite struct AuthorizationURLTests {
    @Test func pointsAtTheGatewayHostsAuthorizePage() throws {
        let url = try AuthorizationURL.make(
            gatewayBaseURL: "https://api-sg.aliexpress.com/rest", appKey: "12345678",
            redirectURI: "https://example.com/callback?x=1&y=2", state: "s 1/2")
        #expect(
            url == "https://api-sg.aliexpress.com/oauth/authorize?response_type=code&force_auth=true"
                + "&redirect_uri=https%3A%2F%2Fexample.com%2Fcallback%3Fx%3D1%26y%3D2&client_id=12345678&state=s%201%2F2"
        )
    }

    @Test func leavesOutAnEmptyOrMissingState() throws {
        let withoutState = try AuthorizationURL.make(
            gatewayBaseURL: "https://api-sg.aliexpress.com/rest/", appKey: "k", redirectURI: "https://a.b/")
        #expect(!withoutState.contains("state="))
        let emptyState = try AuthorizationURL.make(
            gatewayBaseURL: "https://api-sg.aliexpress.com/rest", appKey: "k", redirectURI: "https://a.b/", state: "")
        #expect(emptyState == withoutState)
    }

    @Test func keepsASimulatorsSchemeAndPort() throws {
        let url = try AuthorizationURL.make(
            gatewayBaseURL: "http://127.0.0.1:8123/rest", appKey: "k", redirectURI: "http://localhost/cb")
        #expect(url.hasPrefix("http://127.0.0.1:8123/oauth/authorize?response_type=code&force_auth=true&"))
    }

    @Test func refusesABaseURLWithoutHost() {
        #expect(throws: GatewayFailure.self) {
            try AuthorizationURL.make(gatewayBaseURL: "not a url", appKey: "k", redirectURI: "https://a.b/")
        }
    }
}

@Suite struct ExplicitAuthorizationPageTests {
    @Test func usesAConfiguredAuthorizationPageAsIs() throws {
        let url = try AuthorizationURL.make(
            authorizePage: "https://auth.lazada.com/oauth/authorize", appKey: "k", redirectURI: "https://a.b/cb",
            state: "x")
        #expect(
            url == "https://auth.lazada.com/oauth/authorize?response_type=code&force_auth=true"
                + "&redirect_uri=https%3A%2F%2Fa.b%2Fcb&client_id=k&state=x")
    }

    @Test func refusesAConfiguredPageWithAQuery() {
        #expect(throws: GatewayFailure.self) {
            try AuthorizationURL.make(
                authorizePage: "https://auth.example.com/authorize?x=1", appKey: "k", redirectURI: "r")
        }
    }
}
