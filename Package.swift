// swift-tools-version: 6.2
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "hookbus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "HookbusCore", targets: ["HookbusCore"]),
        .library(name: "HookbusServer", targets: ["HookbusServer"]),
        .executable(name: "hookbusd", targets: ["hookbusd"]),
        .executable(name: "hookbus", targets: ["hookbus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // sqlite3_config, which Swift cannot call (it is variadic), the WAL write-gathering VFS, and
        // sem_clockwait (glibc declares it only with _GNU_SOURCE) for the dispatch threads.
        .target(name: "CSQLiteSetup", linkerSettings: [.linkedLibrary("sqlite3")]),
        // The domain: events, validation, wire codec, outbox store, config, retry policy.
        // No sockets and no processes, so it can be tested and embedded on its own.
        .target(
            name: "HookbusCore",
            dependencies: [
                "CSQLiteSetup",
                .product(name: "GRDB", package: "GRDB.swift"),
                // The outbox insert binds the producer's bytes straight into SQLite.
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict
        ),
        // The broker's I/O: the Unix socket listener, connections, commit loop, process runners.
        .target(
            name: "HookbusServer",
            dependencies: [
                "HookbusCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // A small blocking client for the socket, used by the `hookbus` CLI and the tests.
        .target(name: "HookbusClient", dependencies: ["HookbusCore"], swiftSettings: strict),
        .executableTarget(
            name: "hookbusd",
            dependencies: [
                "HookbusServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "hookbus",
            dependencies: [
                "HookbusClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // `hookbus bench`: latency histograms, and the raw SQLite baseline.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
        // What the test targets and powerloss-check share: a seeded generator.
        .target(name: "HookbusTestSupport", path: "Tests/Support", swiftSettings: strict),
        // A VFS that knows what a power loss would leave on the disk, and the
        // program that stores events through the broker's store on top of it
        // (PowerLossTests runs it: the VFS is process-wide, so it gets a process of its own).
        .target(name: "CPowerLossVFS", path: "Tests/PowerLoss/CPowerLossVFS", linkerSettings: [.linkedLibrary("sqlite3")]),
        .executableTarget(
            name: "powerloss-check",
            dependencies: [
                "CPowerLossVFS", "HookbusCore", "HookbusTestSupport",
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/PowerLoss/PowerLossCheck",
            swiftSettings: strict
        ),
        .testTarget(
            name: "HookbusCoreTests",
            dependencies: [
                "HookbusCore", "HookbusTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HookbusServerTests",
            dependencies: [
                "HookbusCore", "HookbusServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HookbusIntegrationTests",
            dependencies: [
                "HookbusClient", "HookbusCore", "HookbusTestSupport", "hookbusd", "hookbus", "powerloss-check",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
    ]
)
