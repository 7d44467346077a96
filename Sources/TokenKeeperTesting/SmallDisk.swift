public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small tmpfs mounted over a directory, to run out of space on purpose.
/// Mounting needs root (CI runs as root); tests that use it are enabled
/// only where ``canMount`` holds.
public enum SmallDisk {
    public static var canMount: Bool { getuid() == 0 }

    /// Mounts a tmpfs of `bytes` at `path` (made if missing); false where
    /// that is not allowed.
    public static func mount(at path: String, bytes: Int) -> Bool {
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(bytes),mode=0750", "tmpfs", path])
    }

    public static func unmount(_ path: String) {
        _ = run("/bin/umount", ["-l", path])
    }

    /// Fills the file system at `path` to the last byte with a file of its
    /// own, and returns that file's path (remove it to give the room back).
    public static func fill(_ path: String) -> String {
        let ballast = path + "/ballast"
        let descriptor = open(ballast, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { close(descriptor) }
        let block = [UInt8](repeating: 0x5A, count: 16 * 1024)
        while block.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
        let byte: [UInt8] = [0x5A]
        while byte.withUnsafeBytes({ write(descriptor, $0.baseAddress, 1) }) > 0 {}
        return ballast
    }

    private static func run(_ tool: String, _ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }
}
