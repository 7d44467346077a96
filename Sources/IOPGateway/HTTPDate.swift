import TokenKeeperCore

/// Parses the HTTP `Date` header (RFC 9110's IMF-fixdate, the RFC 1123 form,
/// `Sun, 06 Nov 1994 08:49:37 GMT`) without Foundation's `DateFormatter`,
/// which is neither `Sendable` nor cheap to create.
///
/// The obsolete RFC 850 and asctime forms are not accepted: the gateway is a
/// modern server, and a date we cannot read only means no skew check.
enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    static func parse(_ text: String) -> Timestamp? {
        // "Sun, 06 Nov 1994 08:49:37 GMT": the weekday is optional and not checked.
        var fields = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        if let first = fields.first, first.hasSuffix(",") { fields.removeFirst() }
        guard fields.count == 5, fields[4] == "GMT" || fields[4] == "UTC" else { return nil }
        guard let day = Int(fields[0]), (1...31).contains(day),
            let monthIndex = months.firstIndex(of: fields[1].lowercased()),
            fields[2].count == 4, let year = Int(fields[2]), year >= 1970
        else { return nil }
        let isLeap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthLengths = [31, isLeap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard day <= monthLengths[monthIndex] else { return nil }
        let time = fields[3].split(separator: ":").map { Int($0) }
        guard time.count == 3, let hour = time[0], let minute = time[1], let second = time[2],
            (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second)
        else { return nil }
        let days = daysFromCivil(year: Int64(year), month: Int64(monthIndex + 1), day: Int64(day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        return Timestamp(millisecondsSince1970: seconds * 1000)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
