/// The work behind each command-line command.
public enum Commands {
    public static func run(configPath: String?) async -> CommandOutcome { .failure }
    public static func demo(duration: Double?, sellers: Int, directory: String?) async -> CommandOutcome { .failure }
    public static func add(code: String, configPath: String?) async -> CommandOutcome { .failure }
    public static func importFile(path: String, configPath: String?) async -> CommandOutcome { .failure }
    public static func importOne(_ request: ImportRequest, configPath: String?) async -> CommandOutcome { .failure }
    public static func list(json: Bool, configPath: String?) async -> CommandOutcome { .failure }
    public static func token(sellerID: String, configPath: String?) async -> CommandOutcome { .failure }
    public static func refresh(sellerIDs: [String], allDue: Bool, configPath: String?) async -> CommandOutcome { .failure }
    public static func authorizeURL(state: String?, configPath: String?) async -> CommandOutcome { .failure }
    public static func setEnabled(_ enabled: Bool, sellerID: String, configPath: String?) async -> CommandOutcome { .failure }
    public static func remove(sellerID: String, configPath: String?) async -> CommandOutcome { .failure }
    public static func checkConfig(configPath: String?) async -> CommandOutcome { .failure }
}
