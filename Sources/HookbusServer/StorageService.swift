import HookbusCore
import Logging
import ServiceLifecycle

/// Owns the database for the life of the broker. Started first, so it stops
/// last: by the time it closes the store, the listener has answered everything.
public final class StorageService: Service {
    public let store: Store
    public let committer: Committer
    private let logger: Logger
    /// Held until the broker stops (the socket's lock file, say).
    private let locks: [LockFile]

    public init(store: Store, committer: Committer, locks: [LockFile] = [], logger: Logger) {
        self.store = store
        self.locks = locks
        self.committer = committer
        self.logger = logger
    }

    public func run() async throws {
        // A large file was not checked before serving: check it now, beside the work.
        if (try? FileManagerSize.of(store.path)) ?? 0 > Store.startupCheckLimit {
            do {
                if let damage = try await store.checkInBackground() {
                    logger.critical("database damaged; refusing to publish", metadata: ["hookbus.error": "\(damage)"])
                }
            } catch {
                logger.error("integrity check failed to run", metadata: ["hookbus.error": "\(error)"])
            }
        }
        // Wait for shutdown; cancellation (a failing sibling) ends the wait too.
        try? await gracefulShutdown()
        await committer.close()
        do {
            try store.close()
            logger.info("database closed", metadata: ["hookbus.database": "\(store.path)"])
        } catch {
            logger.error("closing the database failed", metadata: ["hookbus.error": "\(error)"])
        }
    }
}

enum FileManagerSize {
    static func of(_ path: String) throws -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Int(info.st_size)
    }
}

#if canImport(Glibc)
import Glibc
#endif
