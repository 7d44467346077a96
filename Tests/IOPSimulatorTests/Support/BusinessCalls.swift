import AsyncHTTPClient
import Foundation
import IOPGateway
import NIOCore
import NIOHTTP1
import TokenKeeperCore

/// How a business call goes over the wire: as one of the vendor's SDKs sends it.
enum CallStyle: Sendable, CaseIterable {
    /// The lazop Python SDK's POST: every parameter, the system ones too, in a
    /// form body (multipart when files are attached); empty values signed.
    case lazopPOST
    /// The lazop Python SDK's GET: every parameter in the query.
    case lazopGET
    /// The Java SDK's way: system parameters in the query, API parameters in
    /// the body; empty values sent but left out of the signature.
    case java
    /// The iop SDKs' `/sync`: the API in `method`, the token in `session`,
    /// no path signed, everything in the body.
    case sync
}

extension RawGateway {
    /// One business call.
    /// - Parameters:
    ///   - api: The API path (`/orders/get`), or for ``CallStyle/sync`` its name (`aliexpress.solution.order.get`).
    ///   - parameters: API parameters.
    ///   - accessToken: Sent as `access_token` (`session` on `/sync`); nil sends none.
    ///   - files: Attached files: a multipart body, files unsigned.
    ///   - tamper: Changes the parameters after signing.
    func business(
        _ api: String, _ parameters: [String: String] = [:], accessToken: String?, files: [IOPForm.FilePart] = [],
        style: CallStyle = .lazopPOST, signWith signingSecret: String? = nil,
        tamper: (inout [String: String]) -> Void = { _ in }
    ) async throws -> RawAnswer {
        var system = [
            "app_key": appKey,
            "timestamp": String(clock.now().millisecondsSince1970),
            "sign_method": "sha256",
            "partner_id": "lazop-sdk-python-20181207",
        ]
        if style == .sync { system["method"] = api }
        if let accessToken { system[style == .sync ? "session" : "access_token"] = accessToken }
        var all = system.merging(parameters) { system, _ in system }
        all["sign"] = IOPSignature.sign(
            apiPath: style == .sync ? "" : api, parameters: all, secret: signingSecret ?? secret,
            includingEmptyValues: style != .java)
        tamper(&all)

        let origin = baseURL.replacingOccurrences(of: "/rest", with: "")
        let url = style == .sync ? origin + "/sync" : baseURL + api
        let inQuery: (String) -> Bool =
            switch style {
            case .lazopGET: { _ in true }
            case .java: { system[$0] != nil || $0 == "sign" }
            case .lazopPOST, .sync: { _ in false }
            }
        let sorted = all.sorted { $0.key < $1.key }
        let query = sorted.filter { inQuery($0.key) }.map { (key: $0.key, value: $0.value) }
        let body = IOPForm(
            fields: sorted.filter { !inQuery($0.key) }.map { IOPForm.Field(name: $0.key, value: $0.value) },
            files: files)
        var request = HTTPClientRequest(url: query.isEmpty ? url : url + "?" + PercentEncoding.formEncode(query))
        if style == .lazopGET {
            request.method = .GET
        } else {
            request.method = .POST
            let encoded = body.encoded(boundary: IOPForm.makeBoundary())
            request.headers.add(name: "Content-Type", value: encoded.contentType)
            request.body = .bytes(ByteBuffer(bytes: encoded.body))
        }
        return try await send(request)
    }
}

extension RawAnswer {
    /// A business answer's `data`.
    var data: [String: Any]? { object?["data"] as? [String: Any] }

    /// The API parameters a business answer echoes.
    var echoedParameters: [String: String]? { data?["params"] as? [String: String] }

    /// The files a business answer echoes, each field as text.
    var echoedFiles: [[String: String]]? {
        (data?["files"] as? [[String: Any]])?.map { $0.mapValues { "\($0)" } }
    }
}
