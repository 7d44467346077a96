import Testing

@testable import IOPGateway

@Suite struct IOPSignatureTests {
    static let knownParameters = [
        "app_key": "12345678", "code": "3_500102_JxZ05Ux3cnnSSUm6dCxYg6Q26", "sign_method": "sha256",
        "timestamp": "1517820392000",
    ]
    static let knownSignature = "35607762342831B6A417A0DED84B79C05FEFBF116969C48AD6DC00279A9F4D81"

    @Test func matchesTheVendorsKnownAnswer() {
        let signature = IOPSignature.sign(
            apiPath: "/auth/token/create", parameters: Self.knownParameters, secret: "helloworld")
        #expect(signature == Self.knownSignature)
    }

    @Test func ignoresEmptyValuesAndTheSignParameter() {
        var parameters = Self.knownParameters
        parameters["partner_id"] = ""
        parameters["sign"] = "ANYTHING"
        #expect(
            IOPSignature.sign(apiPath: "/auth/token/create", parameters: parameters, secret: "helloworld")
                == Self.knownSignature)
    }

    @Test func changesWithTheSecretTheApiAndEveryValue() {
        let base = IOPSignature.sign(
            apiPath: "/auth/token/create", parameters: Self.knownParameters, secret: "helloworld")
        #expect(
            IOPSignature.sign(apiPath: "/auth/token/create", parameters: Self.knownParameters, secret: "hello") != base)
        #expect(
            IOPSignature.sign(apiPath: "/auth/token/refresh", parameters: Self.knownParameters, secret: "helloworld")
                != base)
        var changed = Self.knownParameters
        changed["timestamp"] = "1517820392001"
        #expect(IOPSignature.sign(apiPath: "/auth/token/create", parameters: changed, secret: "helloworld") != base)
    }

    @Test func verifiesCaseInsensitivelyAndRejectsOthers() {
        let parameters = Self.knownParameters
        #expect(
            IOPSignature.verify(
                signature: Self.knownSignature.lowercased(), apiPath: "/auth/token/create", parameters: parameters,
                secret: "helloworld"))
        #expect(
            !IOPSignature.verify(
                signature: Self.knownSignature, apiPath: "/auth/token/create", parameters: parameters, secret: "other"))
        #expect(
            !IOPSignature.verify(
                signature: "35", apiPath: "/auth/token/create", parameters: parameters, secret: "helloworld"))
    }
}
