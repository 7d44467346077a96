// swift-tools-version: 6.2
import PackageDescription

// libFuzzer targets for tokenkeeper's parsers, kept out of the main package so
// that its `swift build` and `swift test` never see `-sanitize=fuzzer`.
// Build and run them with scripts/fuzz. Each target's one file is not named
// main.swift, so SwiftPM compiles it as a library and libFuzzer supplies main.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "tokenkeeper-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The name pins the identity, which would otherwise be the checkout's folder name.
        .package(name: "tokenkeeper", path: "..")
    ],
    targets: [
        .executableTarget(
            name: "FuzzIOPResponseDecoder",
            dependencies: [
                .product(name: "IOPGateway", package: "tokenkeeper"),
                .product(name: "TokenKeeperCore", package: "tokenkeeper"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "FuzzIOPForm",
            dependencies: [.product(name: "IOPGateway", package: "tokenkeeper")],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "FuzzConfigurationLoader",
            dependencies: [.product(name: "TokenKeeperService", package: "tokenkeeper")],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "FuzzImportLineParser",
            dependencies: [.product(name: "TokenKeeperService", package: "tokenkeeper")],
            swiftSettings: strictSettings
        ),
    ]
)
