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
            // Control characters in what subscribers and producers wrote are escaped:
            // one log line is always one line of the broker's (LogStream).
            var handler = StreamLogHandler(label: label, stream: LogStream(descriptor: 2))
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "hookbusd")
        Self.raiseDescriptorLimit(maxConnections: settings.limits.maxConnections, logger: logger)
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

    /// Descriptors kept for everything but connections: the database
    /// and its files, the lock files, the listener, subscriber pipes.
    static let reservedDescriptors = 128

    /// Raises the soft limit on open descriptors to the hard one (systemd and
    /// shells start services at 1,024 soft): without it, idle connections run
    /// the broker out of descriptors before `max_connections` refuses them, and
    /// then the database, exec and pipe subscribers cannot open theirs. Says so
    /// if even the hard limit is short of `max_connections` plus a reserve.
    static func raiseDescriptorLimit(maxConnections: Int, logger: Logger) {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            // Linux refuses RLIM_INFINITY (all ones) here; nr_open is 1,048,576 by default.
            raised.rlim_cur = limit.rlim_max == rlim_t.max ? 1 << 20 : limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        let needed = rlim_t(maxConnections + reservedDescriptors)
        if limit.rlim_cur != rlim_t.max && limit.rlim_cur < needed {
            let message = "max_connections = \(maxConnections) needs about \(needed) open descriptors, and this process may "
                + "open \(limit.rlim_cur): raise the limit (LimitNOFILE= in a systemd unit, ulimit -n) or lower max_connections, "
                + "or idle connections can leave the broker none for its database and subscribers"
            logger.warning("\(message)")
        }
    }

    private func fail(_ message: String, code: Int32) -> Never {
        let line = Array("hookbusd: \(message)\n".utf8)
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        Glibc.exit(code)
    }
}

