import GRDB
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The broker's SQLite database: the outbox and, beside it, the delivery state.
///
/// One writer connection (GRDB's `DatabasePool` serialises writes) and a pool
/// of readers; WAL mode; `synchronous` set by `durability`. Opening takes an
/// exclusive lock on `<path>.lock` unless `exclusive` is false, and applies the
/// named, forward-only migrations of `Migrations`.
public final class Store: Sendable {
    public let path: String
    public let durability: Durability
    public let pool: DatabasePool
    private let lock: LockFile?

    public init(path: String, durability: Durability = .full, exclusive: Bool = true) throws(StoreError) {
        self.path = path
        self.durability = durability
        self.lock = exclusive ? try LockFile(path: path + ".lock", purpose: "database \(path)") : nil
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.label = "hookbus"
        configuration.maximumReaderCount = 4
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB puts the WAL writer on synchronous = NORMAL after opening;
            // set what the user asked for on the one writer connection.
            let pragma = durability == .full ? "FULL" : "NORMAL"
            // A test seam for the disk-full path: HOOKBUS_MAX_PAGE_COUNT caps the
            // file so SQLite answers SQLITE_FULL (see protocol/STORAGE.md).
            let maxPages = getenv("HOOKBUS_MAX_PAGE_COUNT").flatMap { Int(String(cString: $0)) }
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(pragma)")
                if let maxPages { _ = try Int.fetchOne(db, sql: "PRAGMA max_page_count = \(maxPages)") }
                // Reading the schema fails here on a file that is not a database.
                _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master")
            }
            try Migrations.migrator.migrate(pool)
            self.pool = pool
        } catch {
            let failure = StoreError.from(error, path: path)
            if failure.kind == .corrupt {
                throw StoreError(.corrupt, "\(path) is not a hookbus database or is damaged (\(failure.message)). "
                    + "hookbus will not start over on its own: move the file aside to start empty, "
                    + "or restore it from a backup", sqliteCode: failure.sqliteCode)
            }
            throw failure
        }
    }

    /// The value of `PRAGMA synchronous` on the writer connection (2 = FULL, 1 = NORMAL).
    public func writerSynchronous() throws -> Int {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// Closes every connection. Later calls fail.
    public func close() throws {
        try pool.close()
    }
}
