import Foundation

/// The benchmark's parts, each selectable with `--only`.
enum Section: String, CaseIterable {
    case disk, concurrency, throughput, scale, rate, precision, proxy, postgres
}

struct BenchmarkOptions {
    var sections = Set(Section.allCases)
    /// The largest fleet of the scale section.
    var accounts = 1_000_000
    /// Smaller fleets measured before it, for the growth figures.
    var growth = [10_000, 100_000]
    var idleSeconds = 60
    /// Sellers due at once in the throughput section.
    var due = 30_000
    /// Sellers due at once beside the largest fleet.
    var drain = 100_000
    /// `refresh.concurrency` of the throughput section.
    var concurrency = 64
    var rateMinutes = 11.0
    var precisionSeconds = 60
    /// Sequential calls each way in the proxy section.
    var proxyCalls = 2_000
    /// The fleet the PostgreSQL section starts with.
    var postgresAccounts = 1_000_000
    /// Where the scratch directories go: the disk measured is this one's.
    var directory = NSTemporaryDirectory()

    static let usage = """
        usage: Benchmarks [--only disk,concurrency,throughput,scale,rate,precision,proxy,postgres]
                          [--accounts 1000000] [--growth 10000,100000] [--idle-seconds 60]
                          [--drain 100000] [--due 30000] [--concurrency 64]
                          [--rate-minutes 11] [--precision-seconds 60] [--proxy-calls 2000]
                          [--pg-accounts 1000000] [--dir PATH]
        Runs the release tokenkeeper beside this binary against an in-process IOPSimulator.
        Every section runs unless --only names some; --growth "" skips the smaller fleets.
        The postgres section starts a PostgreSQL server of its own (Debian's postgresql),
        and is skipped without one. The proxy section drives the vendor's SDK (lazop-sdk) with .build/test-python
        (scripts/test makes it) or $TOKENKEEPER_TEST_PYTHON, and is skipped without it.
        """

    init(_ arguments: [String]) throws(OptionError) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            if flag == "--help" || flag == "-h" { throw .help }
            guard let value = iterator.next() else { throw .invalid("\(flag) needs a value") }
            func number() throws(OptionError) -> Int {
                guard let number = Int(value.replacingOccurrences(of: "_", with: "")), number >= 0 else {
                    throw .invalid("\(flag) needs a whole number, not \"\(value)\"")
                }
                return number
            }
            func list() -> [String] {
                value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            }
            switch flag {
            case "--only":
                sections = []
                for name in list() {
                    guard let section = Section(rawValue: name) else { throw .invalid("no section \"\(name)\"") }
                    sections.insert(section)
                }
            case "--accounts": accounts = try number()
            case "--growth":
                growth = try list().map { text throws(OptionError) in
                    guard let size = Int(text), size > 0 else {
                        throw .invalid("--growth needs sizes, not \"\(text)\"")
                    }
                    return size
                }
            case "--idle-seconds": idleSeconds = try number()
            case "--due": due = try number()
            case "--drain": drain = try number()
            case "--concurrency": concurrency = try number()
            case "--rate-minutes":
                guard let minutes = Double(value), minutes >= 1 else {
                    throw .invalid("--rate-minutes needs 1 or more")
                }
                rateMinutes = minutes
            case "--precision-seconds": precisionSeconds = try number()
            case "--proxy-calls": proxyCalls = try number()
            case "--pg-accounts": postgresAccounts = try number()
            case "--dir": directory = value
            default: throw .invalid("unknown option \(flag)")
            }
        }
    }

    func runs(_ section: Section) -> Bool { sections.contains(section) }
}

enum OptionError: Error {
    case help
    case invalid(String)
}
