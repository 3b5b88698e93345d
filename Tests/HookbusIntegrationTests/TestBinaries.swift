import Foundation

/// Where the built `hookbusd` and `hookbus` are.
///
/// `swift build --build-tests` puts them beside the test bundle (the test
/// target depends on both executables), and under `swift test` on Linux
/// `CommandLine.arguments[0]` is that bundle: `.build/<triple>/debug/hookbusPackageTests.xctest`.
/// `HOOKBUS_BIN_DIR` overrides the search (say, to test a release build);
/// `<package>/.build/debug` is the last resort.
enum TestBinaries {
    /// The package's root directory, found from this file's path.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // HookbusIntegrationTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// The directory holding both executables, or nil if none does.
    static let directory: URL? = candidates.first { directory in
        ["hookbusd", "hookbus"].allSatisfy {
            FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent($0).path)
        }
    }

    static var candidates: [URL] {
        var out: [URL] = []
        if let override = ProcessInfo.processInfo.environment["HOOKBUS_BIN_DIR"], !override.isEmpty {
            out.append(URL(fileURLWithPath: override))
        }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<3 {
            out.append(directory)
            directory = directory.deletingLastPathComponent()
        }
        out.append(packageRoot.appendingPathComponent(".build/debug"))
        return out
    }

    static func executable(_ name: String) throws -> URL {
        guard let directory else {
            throw HarnessError("cannot find the built \(name): looked in \(candidates.map(\.path).joined(separator: ", ")); "
                + "run `swift build --build-tests` or set HOOKBUS_BIN_DIR")
        }
        return directory.appendingPathComponent(name)
    }

    static func hookbusd() throws -> URL { try executable("hookbusd") }
    static func hookbus() throws -> URL { try executable("hookbus") }
}

/// A failure of the test harness itself (a process that would not start or
/// stop, a file that cannot be made), with what is known about it.
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
