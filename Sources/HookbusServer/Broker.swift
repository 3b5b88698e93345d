import HookbusCore
import Logging
import ServiceLifecycle

/// Assembles the broker's services from a config: storage first, the listener
/// last, so graceful shutdown stops the listener first and the storage last.
public struct Broker {
    public let config: BrokerConfig
    public let logger: Logger

    public init(config: BrokerConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// Opens the database and the socket's lock and returns the group to run.
    /// Throws, before anything is served, if either is in use or the database is damaged.
    public func makeServiceGroup(onReady: @escaping @Sendable () -> Void = {}) throws -> ServiceGroup {
        let store = try Store(path: config.databasePath, durability: config.durability)
        let socketLock = try LockFile(path: config.socketPath + ".lock", purpose: "socket \(config.socketPath)")
        try SocketFile.prepare(config.socketPath)
        let committer = Committer(store: store, logger: logger)
        let storage = StorageService(store: store, committer: committer, locks: [socketLock], logger: logger)
        let listener = Listener(config: config, committer: committer, logger: logger, onReady: onReady)
        logger.info("database open", metadata: [
            "hookbus.database": "\(config.databasePath)", "hookbus.durability": "\(config.durability.rawValue)",
        ])
        return ServiceGroup(configuration: .init(
            services: [
                .init(service: storage),
                .init(service: listener),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
    }
}
