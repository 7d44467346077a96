import TokenKeeperCore

extension IOPResponseDecoder {
    /// The sellers a Lazada token serves, in the order the answer lists them.
    ///
    /// `country_user_info` is read, or `user_info` where it lists nobody (some
    /// local sellers answer so); either may be a list or a single object. An
    /// entry without a seller id cannot be found by readers and is skipped, as
    /// is a repeated seller id (the stores keep one row per seller id); both
    /// are noted by position only, since the gateway's values are not ours to
    /// log. Countries are lower-cased (`sg`, `th`, …): the gateway's own form,
    /// made dependable for readers that filter on it. An entry without a
    /// country takes the answer's, unless that is `cb` (a cross-border account
    /// is no country of its own).
    /// - Parameters:
    ///   - fields: The answer.
    ///   - anomalies: Where odd entries are noted.
    /// - Returns: One ``TokenKeeperCore/VentureSeller`` per usable entry; empty
    ///   for an AliExpress answer, which has neither list.
    static func ventures(from fields: IOPResponseFields, anomalies: inout [String]) -> [VentureSeller] {
        let lists = [("country_user_info", fields.countryUserInfo), ("user_info", fields.userInfo)]
        for case (let name, let list?) in lists where list.isUnreadable {
            anomalies.append("\(name) is neither a list nor an object")
        }
        guard case (let name, let list?)? = lists.first(where: { $0.1?.entries.isEmpty == false }) else { return [] }

        let answerCountry = country(fields.country).flatMap { $0 == "cb" ? nil : $0 }
        var ventures: [VentureSeller] = []
        var seen: Set<String> = []
        for (index, entry) in list.entries.enumerated() {
            guard let value = entry.sellerID, !value.isAbsent, let sellerID = value.text else {
                anomalies.append("\(name)[\(index)] has no seller_id; skipped")
                continue
            }
            guard seen.insert(sellerID).inserted else {
                anomalies.append("\(name)[\(index)] repeats an earlier seller_id; skipped")
                continue
            }
            let country = country(entry.country) ?? answerCountry
            if country == nil { anomalies.append("\(name)[\(index)] has no country") }
            ventures.append(
                VentureSeller(
                    country: country ?? "", sellerID: sellerID, userID: entry.userID?.text,
                    shortCode: entry.shortCode?.text))
        }
        return ventures
    }

    /// A country code as readers see it: lower case, nil when absent.
    static func country(_ value: JSONScalar?) -> String? {
        guard let value, !value.isAbsent else { return nil }
        return value.text?.lowercased()
    }
}
