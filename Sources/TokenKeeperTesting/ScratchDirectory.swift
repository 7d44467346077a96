public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory under the system temporary directory, removed when the
/// value is released.
public final class ScratchDirectory: Sendable {
    public let path: String

    public init(mode: mode_t = 0o750) throws {
        var template = Array((NSTemporaryDirectory() + "/tokenkeeper-test-XXXXXX").utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(.EIO)
        }
        path = String(cString: created)
        chmod(path, mode)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    public func bytes(_ name: String) -> Data {
        FileManager.default.contents(atPath: file(name)) ?? Data()
    }

    public func exists(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: file(name))
    }

    /// Permission bits of a file, e.g. 0o640.
    public func mode(_ name: String) -> mode_t? {
        var info = stat()
        guard stat(file(name), &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    public func group(_ name: String) -> gid_t? {
        var info = stat()
        guard stat(file(name), &info) == 0 else { return nil }
        return info.st_gid
    }

    public func write(_ name: String, _ data: Data) throws {
        try data.write(to: URL(fileURLWithPath: file(name)))
    }

    /// Writes a text file with the given permission bits; returns its path.
    @discardableResult
    public func write(_ name: String, _ text: String, mode: Int = 0o600) -> String {
        _ = FileManager.default.createFile(
            atPath: file(name), contents: Data(text.utf8), attributes: [.posixPermissions: mode])
        return file(name)
    }

    /// Every file in the directory, sorted.
    public func listing() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }
}
