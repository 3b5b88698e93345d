import HookbusCore
import Logging
import ServiceLifecycle

/// Assembles the broker's services from a config: storage first, then
/// dispatch, the listener last, so graceful shutdown stops the listener first
/// (answering what it read), then dispatch (finishing what is in flight), and
/// closes the storage last.
public struct Broker {
    public let config: BrokerConfig
    public let hooks: HookRegistry
    public let logger: Logger

    /// - Parameter hooks: the in-process hooks that config subscribers may name
    ///   (`hook = "..."`); the built-in ones by default. Register your own with
    ///   `HookRegistry.register(_:)`.
    public init(config: BrokerConfig, hooks: HookRegistry = .builtIn, logger: Logger) {
        self.config = config
        self.hooks = hooks
        self.logger = logger
    }

    /// Opens the database and the socket's lock and returns the group to run.
    /// Throws, before anything is served, if either is in use or the database is damaged.
    public func makeServiceGroup(onReady: @escaping @Sendable () -> Void = {}) throws -> ServiceGroup {
        // The socket first: a start refused for its socket (too long a path, no
        // such directory, another broker on it) leaves no new database behind.
        let socketLock = try LockFile(path: config.socketPath + ".lock", purpose: "socket \(config.socketPath)")
        try SocketFile.prepare(config.socketPath)
        let store = try Store(path: config.databasePath, durability: config.durability)
        let signal = SeqSignal()
        let limit = config.limits.maxOutboxBytes
        let committer = Committer(store: store, logger: logger, admission: { db in
            if let damage = store.damage { return WireError(.unavailable, "database_damaged", damage) }
            guard limit > 0 else { return nil }
            let used = try Store.usedBytes(db)
            guard used >= limit else { return nil }
            return WireError(.unavailable, "outbox_full",
                             "the database holds \(used) bytes, at its limit max_outbox_bytes = \(limit); "
                             + "nothing was stored: publish again once dispatch and retention have made room")
        }, onCommit: { signal.publish($0) })
        let storage = StorageService(store: store, committer: committer, locks: [socketLock], logger: logger)
        let dispatcher = try Dispatcher(config: config, store: store, committer: committer, signal: signal,
                                        hooks: hooks, logger: logger)
        let commands = CommandRouter(store: store, dispatcher: dispatcher, signal: signal)
        let listener = Listener(config: config, committer: committer, commands: commands, logger: logger, onReady: onReady)
        logger.info("database open", metadata: [
            "hookbus.database": "\(config.databasePath)", "hookbus.durability": "\(config.durability.rawValue)",
        ])
        // Stopped in reverse order: the listener (and its socket subscribers)
        // first, while dispatch still runs and times out their deliveries.
        return ServiceGroup(configuration: .init(
            services: [
                .init(service: storage),
                .init(service: dispatcher),
                .init(service: listener),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
    }
}
