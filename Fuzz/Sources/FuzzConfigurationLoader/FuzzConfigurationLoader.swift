import Foundation
import TokenKeeperService

// The input is the configuration file. The loader reads it from disk, so each
// input is written to one file per process (removed at exit) and loaded with
// an empty environment. Refusals are expected; a crash is the finding.

private let configurationPath = FileManager.default.temporaryDirectory
    .appendingPathComponent("tokenkeeper-fuzz-\(getpid()).yaml").path
private let removeAtExit: Void = { _ = atexit { _ = unlink(configurationPath) } }()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = removeAtExit
    guard FileManager.default.createFile(atPath: configurationPath, contents: Data(bytes: data, count: size)) else {
        fatalError("cannot write \(configurationPath)")
    }
    do {
        let configuration = try ConfigurationLoader(environment: [:]).load(explicitPath: configurationPath)
        _ = String(describing: configuration)
    } catch {
        _ = error.description
    }
    return 0
}
