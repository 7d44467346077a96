import Crypto
import Foundation
import Testing
import TokenKeeperCore

@testable import TokenKeeperService

@Suite("Webhook signatures as Standard Webhooks makes them")
struct WebhookSigningTests {
    @Test("the specification's own example signs as it says")
    func specificationExample() {
        // From the Standard Webhooks specification and its reference libraries.
        let signing = WebhookSigning(secret: Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        #expect(
            signing.signature(
                id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: #"{"test": 2432232314}"#)
                == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test("a secret without the whsec_ prefix is used as its bytes")
    func plainSecretIsItsBytes() {
        let signing = WebhookSigning(secret: Secret("plain-secret"))
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data("id.7.{}".utf8), using: SymmetricKey(data: Data("plain-secret".utf8)))
        #expect(signing.signature(id: "id", timestamp: 7, body: "{}") == "v1," + Data(mac).base64EncodedString())
    }

    @Test("an unpadded whsec_ key is taken; one that is not base64, or too short, is a configuration error")
    func whsecKeysAreChecked() throws {
        let padded = WebhookSigning(secret: Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let unpadded = WebhookSigning(
            secret: Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".replacingOccurrences(of: "=", with: "")))
        #expect(
            padded.signature(id: "a", timestamp: 1, body: "b") == unpadded.signature(id: "a", timestamp: 1, body: "b"))
        for bad in ["whsec_not base64!", "whsec_c2hvcnQ="] {
            #expect(throws: ConfigurationError.self) {
                try AppSecretLoader.checkedWebhookSecret(Secret(bad), key: "notify.webhook_secret_file")
            }
        }
        let ok = try AppSecretLoader.checkedWebhookSecret(Secret("any secret"), key: "notify.webhook_secret_file")
        #expect(ok.exposedValue == "any secret")
    }
}
