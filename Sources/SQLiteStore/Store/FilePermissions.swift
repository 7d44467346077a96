import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Creates and checks the storage directory and the database files with the
/// modes of the permission model (docs/DATABASE.md), whatever the umask:
/// every mode is set with an explicit `chmod`.
enum FilePermissions {
    /// The storage directory's group: the group of trusted readers.
    /// Creates the directory (mode 0750) if it does not exist.
    static func prepareDirectory(_ path: String, logger: Logger) throws -> gid_t {
        var info = stat()
        if stat(path, &info) != 0 {
            guard errno == ENOENT else { throw problem(path, "cannot inspect the directory") }
            guard mkdir(path, 0o750) == 0 || errno == EEXIST else {
                throw problem(path, "cannot create the storage directory")
            }
            guard chmod(path, 0o750) == 0, stat(path, &info) == 0 else {
                throw problem(path, "cannot set the storage directory's mode to 0750")
            }
            logger.notice("created the storage directory", metadata: ["path": "\(path)", "mode": "0750"])
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw SQLiteStoreError.fileProblem(path: path, problem: "is not a directory")
        }
        if info.st_mode & 0o010 == 0 {
            logger.warning(
                "storage directory not searchable by its group: readers cannot reach tokens.db; chmod 0750 it",
                metadata: ["path": "\(path)", "mode": "\(octal(info.st_mode & 0o7777))"])
        }
        return info.st_gid
    }

    /// Creates an empty file with exactly `mode` (and `group`, when given) if
    /// nothing is at `path`. SQLite takes a 0-byte file as an empty database.
    static func createIfMissing(_ path: String, mode: mode_t, group: gid_t?, logger: Logger) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard descriptor >= 0 else {
            if errno == EEXIST { return }
            throw problem(path, "cannot create the database file")
        }
        defer { close(descriptor) }
        // The umask may have cleared bits of `mode` at creation.
        guard fchmod(descriptor, mode) == 0 else {
            throw problem(path, "cannot set the mode of the new database file to \(octal(mode))")
        }
        if let group, fchown(descriptor, uid_t.max, group) != 0 {
            let failure = errorText()
            logger.warning(
                "cannot give the new database file the storage directory's group; readers in that group cannot read it",
                metadata: ["path": "\(path)", "group": "\(group)", "error": "\(failure)"])
        }
    }

    /// Gives an existing file exactly `mode` (and `group`, when given). A mode
    /// wider than `mode` is narrowed and logged as a warning: the file may
    /// have been readable by others before. A missing file is skipped when
    /// not `required`.
    static func enforce(_ path: String, mode: mode_t, group: gid_t?, required: Bool, logger: Logger) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT && !required { return }
            throw problem(path, "cannot inspect the database file")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SQLiteStoreError.fileProblem(path: path, problem: "is not a regular file")
        }
        let current = info.st_mode & 0o7777
        if current != mode {
            guard chmod(path, mode) == 0 else {
                throw problem(path, "has mode \(octal(current)) and cannot be given mode \(octal(mode))")
            }
            let metadata: Logger.Metadata = ["path": "\(path)", "was": "\(octal(current))", "now": "\(octal(mode))"]
            if current & ~mode != 0 {
                logger.warning("database file had a wider mode than it should; narrowed it", metadata: metadata)
            } else {
                logger.notice("database file mode corrected", metadata: metadata)
            }
        }
        if let group, info.st_gid != group {
            if chown(path, uid_t.max, group) == 0 {
                logger.notice(
                    "database file given the storage directory's group",
                    metadata: ["path": "\(path)", "was": "\(info.st_gid)", "now": "\(group)"])
            } else {
                let failure = errorText()
                logger.warning(
                    "file's group differs from the directory's and cannot be changed: readers cannot read it",
                    metadata: [
                        "path": "\(path)", "group": "\(info.st_gid)", "directory_group": "\(group)",
                        "error": "\(failure)",
                    ])
            }
        }
    }

    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private static func problem(_ path: String, _ what: String) -> SQLiteStoreError {
        SQLiteStoreError.fileProblem(path: path, problem: "\(what): \(errorText())")
    }

    private static func errorText() -> String {
        String(cString: strerror(errno))
    }
}
