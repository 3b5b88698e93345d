import ArgumentParser
import HookbusCore
import HookbusServer
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

@main
struct Hookbusd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hookbusd",
        abstract: "The hookbus broker: a durable event bus on a Unix socket.",
        discussion: "With no arguments it serves ./hookbus.sock with ./hookbus.db. Flags override the config file."
    )

    @Option(name: .long, help: "TOML config file (see protocol/CONFIG.md).")
    var config: String?

    @Option(name: .long, help: "Unix socket path (default ./hookbus.sock).")
    var socket: String?

    @Option(name: .long, help: "SQLite database path (default ./hookbus.db).")
    var db: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("--log-level: must be one of \(levels), got \"\(logLevel)\"")
        }
    }

    func run() async throws {
        // A subscriber that exits early must not kill the broker when it writes to its stdin.
        signal(SIGPIPE, SIG_IGN)
        var settings = BrokerConfig()
        if let file = config {
            do {
                settings = try ConfigLoader(hooks: .builtIn).load(file: file)
            } catch {
                fail("configuration error: \(error)", code: 78)  // EX_CONFIG
            }
        }
        if let socket { settings.socketPath = socket }
        if let db { settings.databasePath = db }
        if let logLevel { settings.logLevel = logLevel }
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "hookbusd")
        let group: ServiceGroup
        do {
            group = try Broker(config: settings, logger: logger).makeServiceGroup {
                logger.info("ready", metadata: ["hookbus.pid": "\(getpid())"])
            }
        } catch let error as ConfigError {
            fail("configuration error: \(error)", code: 78)  // EX_CONFIG
        } catch {
            fail("cannot start: \(error)", code: 1)
        }
        try await group.run()
    }

    private func fail(_ message: String, code: Int32) -> Never {
        let line = Array("hookbusd: \(message)\n".utf8)
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        Glibc.exit(code)
    }
}

