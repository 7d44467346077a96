/// A JSON value where the gateway may put a number, a numeric string or null.
///
/// The gateway is inconsistent (`"expires_in": "10"` in its own sample,
/// numbers elsewhere), so each field is read as whatever arrived and
/// interpreted afterwards. Objects and arrays decode as ``other`` instead of
/// failing the whole body: an odd field must not hide a valid grant.
enum JSONScalar: Decodable, Equatable {
    case string(String)
    case integer(Int64)
    case number(Double)
    case bool(Bool)
    case null
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else {
            self = .other
        }
    }

    /// The value as text; numbers print without a fraction when they have none.
    /// Nil for null, booleans, objects and arrays, and for an empty string.
    var text: String? {
        switch self {
        case .string(let value): value.isEmpty ? nil : value
        case .integer(let value): String(value)
        case .number(let value): Self.exactInteger(value).map(String.init) ?? String(value)
        case .bool, .null, .other: nil
        }
    }

    /// True for null and the empty string, which the gateway uses for "absent".
    var isAbsent: Bool {
        switch self {
        case .null: true
        case .string(let value): value.trimmingASCIISpaces.isEmpty
        default: false
        }
    }

    /// The value as a whole number, from a JSON number or a numeric string.
    var integer: Int64? {
        switch self {
        case .integer(let value): return value
        case .number(let value): return Self.exactInteger(value)
        case .string(let value):
            let trimmed = value.trimmingASCIISpaces
            if let integer = Int64(trimmed) { return integer }
            return Double(trimmed).flatMap(Self.exactInteger)
        case .bool, .null, .other: return nil
        }
    }

    private static func exactInteger(_ value: Double) -> Int64? {
        guard value.isFinite, value.rounded() == value, abs(value) < 9.0e18 else { return nil }
        return Int64(value)
    }
}

extension String {
    var trimmingASCIISpaces: String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return String(text)
    }
}

/// Every top-level field of a token answer or an error envelope. Unknown
/// fields are ignored; the interpretation lives in ``IOPResponseDecoder``.
struct IOPResponseFields: Decodable {
    var code: JSONScalar?
    var type: JSONScalar?
    var message: JSONScalar?
    var msg: JSONScalar?
    var requestID: JSONScalar?
    var traceID: JSONScalar?
    var errorResponse: ErrorResponse?

    var accessToken: JSONScalar?
    var refreshToken: JSONScalar?
    var expiresIn: JSONScalar?
    var refreshExpiresIn: JSONScalar?
    var expireTime: JSONScalar?
    var refreshTokenValidTime: JSONScalar?
    var sellerID: JSONScalar?
    var userID: JSONScalar?
    var userNick: JSONScalar?
    var account: JSONScalar?
    var accountPlatform: JSONScalar?
    var sp: JSONScalar?
    var locale: JSONScalar?
    var country: JSONScalar?
    var countryUserInfo: VentureEntries?
    var userInfo: VentureEntries?

    enum CodingKeys: String, CodingKey {
        case code, type, message, msg
        case requestID = "request_id"
        case traceID = "_trace_id_"
        case errorResponse = "error_response"
        case accessToken = "access_token"
        case refreshToken = "refresh_token"
        case expiresIn = "expires_in"
        case refreshExpiresIn = "refresh_expires_in"
        case expireTime = "expire_time"
        case refreshTokenValidTime = "refresh_token_valid_time"
        case sellerID = "seller_id"
        case userID = "user_id"
        case userNick = "user_nick"
        case account
        case accountPlatform = "account_platform"
        case sp, locale, country
        case countryUserInfo = "country_user_info"
        case userInfo = "user_info"
    }

    /// The older `{"error_response": {"type", "code", "msg", "request_id"}}` form.
    /// Decodes from anything; a non-object leaves every field nil.
    struct ErrorResponse: Decodable {
        var code: JSONScalar?
        var type: JSONScalar?
        var message: JSONScalar?
        var msg: JSONScalar?
        var requestID: JSONScalar?

        enum CodingKeys: String, CodingKey {
            case code, type, message, msg
            case requestID = "request_id"
        }

        init(from decoder: any Decoder) throws {
            guard let container = try? decoder.container(keyedBy: CodingKeys.self) else { return }
            code = try container.decodeIfPresent(JSONScalar.self, forKey: .code)
            type = try container.decodeIfPresent(JSONScalar.self, forKey: .type)
            message = try container.decodeIfPresent(JSONScalar.self, forKey: .message)
            msg = try container.decodeIfPresent(JSONScalar.self, forKey: .msg)
            requestID = try container.decodeIfPresent(JSONScalar.self, forKey: .requestID)
        }
    }

    /// Lazada's `country_user_info` (or `user_info`): the sellers one token
    /// serves, one per country. A list, or for some local sellers one object;
    /// decodes from anything, so that an odd value never hides the grant it
    /// travels with.
    struct VentureEntries: Decodable {
        /// In the order listed; an element that is not an object has every field nil.
        var entries: [Entry] = []
        /// True when the value was neither a list, an object nor absent (null, `""`).
        var isUnreadable = false

        init(from decoder: any Decoder) throws {
            if var list = try? decoder.unkeyedContainer() {
                while !list.isAtEnd {
                    // An entry decodes from anything; should one throw all the
                    // same, the list stops there (a container that failed to
                    // decode an element does not move past it).
                    guard let entry = try? list.decode(Entry.self) else {
                        isUnreadable = true
                        break
                    }
                    entries.append(entry)
                }
            } else if (try? decoder.container(keyedBy: Entry.CodingKeys.self)) != nil {
                entries = [try Entry(from: decoder)]
            } else {
                isUnreadable = !((try? JSONScalar(from: decoder))?.isAbsent ?? false)
            }
        }

        /// One `{country, user_id, seller_id, short_code}`; ids come as strings or numbers.
        struct Entry: Decodable {
            var country: JSONScalar?
            var userID: JSONScalar?
            var sellerID: JSONScalar?
            var shortCode: JSONScalar?

            enum CodingKeys: String, CodingKey {
                case country
                case userID = "user_id"
                case sellerID = "seller_id"
                case shortCode = "short_code"
            }

            init(from decoder: any Decoder) throws {
                guard let container = try? decoder.container(keyedBy: CodingKeys.self) else { return }
                country = try container.decodeIfPresent(JSONScalar.self, forKey: .country)
                userID = try container.decodeIfPresent(JSONScalar.self, forKey: .userID)
                sellerID = try container.decodeIfPresent(JSONScalar.self, forKey: .sellerID)
                shortCode = try container.decodeIfPresent(JSONScalar.self, forKey: .shortCode)
            }
        }
    }
}
