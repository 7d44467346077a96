// swift-tools-version: 6.2
import PackageDescription

// Strict settings from the first commit (see ../shared/STYLE.md): every target
// builds in Swift 6 mode with explicit existentials, member import visibility
// and internal imports by default.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "tokenkeeper",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tokenkeeper", targets: ["tokenkeeper"]),
        .library(name: "TokenKeeperCore", targets: ["TokenKeeperCore"]),
        .library(name: "IOPSimulator", targets: ["IOPSimulator"]),
        // For the fuzz targets in Fuzz/ (a package of their own).
        .library(name: "IOPGateway", targets: ["IOPGateway"]),
        .library(name: "TokenKeeperService", targets: ["TokenKeeperService"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["YAML"]),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", "5.4.0"..<"7.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Default traits off: no swift-configuration glue and no full Foundation in the listeners.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .target(
            name: "TokenKeeperCore",
            swiftSettings: strictSettings
        ),
        .target(
            name: "IOPGateway",
            dependencies: [
                "TokenKeeperCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "SQLiteStore",
            dependencies: [
                "TokenKeeperCore",
                "CSQLite",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The same store protocols over PostgreSQL (postgres-nio), for several
        // daemons on one database: leases in short transactions fenced by the
        // refresh token, LISTEN/NOTIFY for changes, a heartbeat table for the
        // nodes that share the sellers and the rate.
        .target(
            name: "PostgresStore",
            dependencies: [
                "TokenKeeperCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "RefreshScheduler",
            dependencies: [
                "TokenKeeperCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "IOPSimulator",
            dependencies: [
                "TokenKeeperCore",
                "IOPGateway",
                // The digests of uploaded files that business calls echo.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "TokenKeeperService",
            dependencies: [
                "TokenKeeperCore",
                "IOPGateway",
                "SQLiteStore",
                "PostgresStore",
                "RefreshScheduler",
                "IOPSimulator",
                "TokenKeeperHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings
        ),
        // The HTTP listeners (callback, metrics and health): one Hummingbird
        // application per listen address, run as a swift-service-lifecycle
        // Service. Knows routes and pages, not stores or gateways: the
        // service layer hands it the handlers.
        .target(
            name: "TokenKeeperHTTP",
            dependencies: [
                "TokenKeeperCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Test doubles shared by the test targets: a manual wall clock, a log recorder.
        .target(
            name: "TokenKeeperTesting",
            dependencies: [
                "TokenKeeperCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The scheduler's test doubles: a scriptable gateway that rotates as
        // the real one does, a manual timer, an event recorder. Used by the
        // scheduler's own tests and by the conformance suite, which runs the
        // scheduler over every real backend.
        .target(
            name: "SchedulerTesting",
            dependencies: [
                "RefreshScheduler", "TokenKeeperCore", "TokenKeeperTesting",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "tokenkeeper",
            dependencies: [
                "TokenKeeperService",
                "TokenKeeperCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "Benchmarks",
            dependencies: [
                "TokenKeeperCore",
                "IOPGateway",
                "SQLiteStore",
                "IOPSimulator",
                // A PostgreSQL server of its own for the postgres section.
                "TokenKeeperTesting",
                // Scrapes the daemon's /metrics.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "TokenKeeperCoreTests",
            dependencies: ["TokenKeeperCore", "TokenKeeperTesting"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IOPGatewayTests",
            dependencies: [
                "IOPGateway", "TokenKeeperCore", "IOPSimulator", "TokenKeeperTesting",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "SQLiteStoreTests",
            dependencies: ["SQLiteStore", "TokenKeeperCore", "CSQLite", "TokenKeeperTesting"],
            swiftSettings: strictSettings
        ),
        // Against a real PostgreSQL server the tests start themselves
        // (TokenKeeperTesting.PostgresServer); skipped where none is installed.
        .testTarget(
            name: "PostgresStoreTests",
            dependencies: [
                "PostgresStore", "TokenKeeperCore", "TokenKeeperTesting",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The store contract's conformance suite: the same test functions
        // against SQLite and a real PostgreSQL the suite starts itself.
        .testTarget(
            name: "StoreConformanceTests",
            dependencies: [
                "SQLiteStore", "PostgresStore", "TokenKeeperCore", "TokenKeeperTesting", "RefreshScheduler",
                "SchedulerTesting", "TokenKeeperService",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RefreshSchedulerTests",
            dependencies: [
                "RefreshScheduler", "TokenKeeperCore", "TokenKeeperTesting", "SchedulerTesting",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IOPSimulatorTests",
            dependencies: [
                "IOPSimulator", "IOPGateway", "TokenKeeperCore", "TokenKeeperTesting",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "TokenKeeperServiceTests",
            dependencies: [
                "TokenKeeperService", "TokenKeeperCore", "IOPSimulator", "IOPGateway", "SQLiteStore", "PostgresStore",
                "RefreshScheduler",
                "TokenKeeperTesting", "TokenKeeperHTTP",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "TokenKeeperHTTPTests",
            dependencies: [
                "TokenKeeperHTTP", "TokenKeeperCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "IOPSimulator", "IOPGateway", "TokenKeeperCore", "CSQLite", "TokenKeeperTesting",
                // A real webhook receiver (Hummingbird), checking signatures
                // (swift-crypto), and a browser's hops (async-http-client).
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            // Files the tests copy by path (a store made by an earlier release).
            exclude: ["Fixtures"],
            swiftSettings: strictSettings
        ),
    ]
)
