/// The work behind each command-line command. Each command lives in an
/// extension (`Commands+…`, `Daemon`, `Demo`); each returns the exit code.
public enum Commands {}
