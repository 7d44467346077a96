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

    /// What the Python SDK (lazop) computes when a parameter is empty: it signs
    /// `partner_id` followed by nothing (computed with its `sign` function).
    @Test func signsEmptyValuesAsTheirNameAloneWhenAsked() {
        var parameters = Self.knownParameters
        parameters["partner_id"] = ""
        let python = "490510F36D08DFBC68389C3E93C75569476C2D76693D8EFD9C2AB3D588B22E6B"
        #expect(
            IOPSignature.sign(
                apiPath: "/auth/token/create", parameters: parameters, secret: "helloworld", includingEmptyValues: true)
                == python)
        #expect(
            IOPSignature.verify(
                signature: python, apiPath: "/auth/token/create", parameters: parameters, secret: "helloworld",
                includingEmptyValues: true))
        #expect(
            !IOPSignature.verify(
                signature: python, apiPath: "/auth/token/create", parameters: parameters, secret: "helloworld"))
        #expect(
            !IOPSignature.verify(
                signature: Self.knownSignature, apiPath: "/auth/token/create", parameters: parameters,
                secret: "helloworld", includingEmptyValues: true))
        // Without empty values the two ways agree.
        #expect(
            IOPSignature.sign(
                apiPath: "/auth/token/create", parameters: Self.knownParameters, secret: "helloworld",
                includingEmptyValues: true) == Self.knownSignature)
    }

    /// A `/sync` call signs no API path (the iop SDK's `sign` for an API name without `/`).
    @Test func signsASyncCallWithoutAPath() {
        let parameters = [
            "app_key": "12345678", "method": "aliexpress.solution.order.get", "session": "tok",
            "sign_method": "sha256", "timestamp": "1517820392000",
        ]
        let python = "1A39A820CF4CED1B023D6615F29984B58947F4A723BCC5A888B24750AD9BD1B3"
        #expect(IOPSignature.sign(apiPath: "", parameters: parameters, secret: "helloworld") == python)
        #expect(IOPSignature.verify(signature: python, apiPath: "", parameters: parameters, secret: "helloworld"))
        #expect(
            !IOPSignature.verify(signature: python, apiPath: "/sync", parameters: parameters, secret: "helloworld"))
    }
}
