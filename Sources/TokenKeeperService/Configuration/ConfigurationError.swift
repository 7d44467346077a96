/// A configuration problem, named precisely: the key (or file), what is wrong
/// and what to do. The command line exits with 78 (EX_CONFIG) on it.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The key path (`refresh.concurrency`), or a file path for file problems.
    public var key: String
    public var problem: String
    public var remedy: String?

    public init(key: String, problem: String, remedy: String? = nil) {
        self.key = key
        self.problem = problem
        self.remedy = remedy
    }

    public var description: String {
        var text = "configuration error: \(key): \(problem)"
        if let remedy { text += "; \(remedy)" }
        return text
    }
}
