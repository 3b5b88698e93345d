import GRDB
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The broker's SQLite database: the outbox and, beside it, the delivery state.
///
/// One writer connection (GRDB's `DatabasePool` serialises writes) and a pool
/// of readers; WAL mode; `synchronous` set by `durability`. Opening takes an
/// exclusive lock on `<path>.lock` unless `exclusive` is false, and applies the
/// named, forward-only migrations of `Migrations`.
///
/// One `Store` appends to a database at a time: the idempotency check is in
/// its memory (`keys`), so a second writer's events would not be known to it.
/// `exclusive: false` is for readers.
public final class Store: Sendable {
    public let path: String
    public let durability: Durability
    public let pool: DatabasePool
    private let lock: LockFile?
    private let damageNote = Mutex<String?>(nil)
    /// Checkpoints off the committer's thread (`Checkpointer`).
    let checkpointer: Checkpointer
    private let closed = Atomic<Bool>(false)
    /// Which `seq` may hold a `(source, id)`: the idempotency check, in
    /// memory (`OutboxKeys`), read from the outbox at open, and the last
    /// `seq` handed out. Used on the writer connection only.
    let keys: Mutex<OutboxKeys>
    /// Whether this store may append to the outbox: only then are `keys` read
    /// at open (0.3 s and 12 MiB per million stored events), which an
    /// operator's tool that never appends (`hookbus replay --db`) skips.
    public let appends: Bool

    /// Entries in `keys` (for tests).
    var keyCount: Int { keys.withLock { $0.count } }

    /// - Parameter appends: false for a tool that never appends to the outbox
    ///   (`append` then stops the process): the idempotency keys are not read.
    public convenience init(path: String, durability: Durability = .full, exclusive: Bool = true,
                            appends: Bool = true) throws(StoreError) {
        try self.init(path: path, durability: durability, exclusive: exclusive, appends: appends, keyTag: OutboxKeys.sipHashTag)
    }

    /// - Parameter keyTag: how `OutboxKeys` hashes a key (tests make every key collide).
    init(path: String, durability: Durability, exclusive: Bool, appends: Bool = true,
         keyTag: @escaping OutboxKeys.TagFunction) throws(StoreError) {
        SQLiteSetup.gatherWALWrites(of: path)
        self.path = path
        self.durability = durability
        self.appends = appends
        self.lock = exclusive ? try LockFile(path: path + ".lock", purpose: "database \(path)") : nil
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.label = "hookbus"
        configuration.maximumReaderCount = 4
        do {
            // Look before writing anything: GRDB's pool setup writes to the file,
            // so an existing file is read through a plain connection first.
            var size = stat()
            if stat(path, &size) == 0 {
                var plain = Configuration()
                plain.label = "hookbus-check"
                let queue = try DatabaseQueue(path: path, configuration: plain)
                // Reading the schema fails here on a file that is not a database.
                _ = try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
                // A file small enough to read in a blink is checked page by page now;
                // a larger one is checked in the background (`checkInBackground`).
                if size.st_size <= Self.startupCheckLimit, let problem = try Self.quickCheck(queue) {
                    try queue.close()
                    throw Self.damaged(path, problem)
                }
                try queue.close()
            } else if errno == ENOENT {
                // A new database is the broker's alone (SQLite would create it
                // 0644 less the umask, readable by every local user); its -wal
                // and -shm files take its mode. An existing file keeps its own.
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
                if fd >= 0 { Glibc.close(fd) }
            }
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
            }
            try Self.migrate(pool, path: path)
            // SQLite syncs the directory when it creates a WAL, not when it
            // creates the database file: a power loss soon after a first start
            // could lose the database's name while its WAL survives.
            try Self.syncDirectory(of: path)
            keys = Mutex(try pool.read { db in
                guard appends else { return OutboxKeys(tag: keyTag) }
                var keys = try Self.loadKeys(db, tag: keyTag)
                keys.handedOut(through: try Self.highestSeq(db))
                return keys
            })
            let checkpointer = Checkpointer(durability: durability)
            pool.writeWithoutTransaction { db in checkpointer.install(on: db) }
            self.checkpointer = checkpointer
            self.pool = pool
        } catch let error as StoreError {
            throw error  // ours already says what to do
        } catch {
            let failure = StoreError.from(error, path: path)
            if failure.kind == .corrupt { throw Self.damaged(path, failure.message, code: failure.sqliteCode) }
            throw failure
        }
    }

    /// Applies the migrations the file lacks. A failure says which were
    /// being applied and why, so that an upgrade that stops is plain.
    private static func migrate(_ pool: DatabasePool, path: String) throws(StoreError) {
        var pending: [String] = []
        do {
            let applied = try pool.writeWithoutTransaction { db in try Migrations.migrator.appliedIdentifiers(db) }
            // A newer hookbusd's schema: this one would write it by rules it has
            // changed since (how seq is handed out, say).
            let unknown = applied.subtracting(Migrations.names).sorted()
            if !unknown.isEmpty {
                throw StoreError(.other, "\(path): the database's schema is newer than this hookbusd knows: "
                    + "a newer version applied \(unknown.joined(separator: ", ")); "
                    + "run that version, or this one on a copy of the database from before the upgrade")
            }
            pending = Migrations.pending(after: applied)
            try Migrations.migrator.migrate(pool)
        } catch {
            var failure = StoreError.from(error, path: path)
            if failure.kind == .corrupt { throw damaged(path, failure.message, code: failure.sqliteCode) }
            // Each migration is its own transaction: those before the one that
            // failed stay applied.
            let now = (try? pool.writeWithoutTransaction { db in try Migrations.migrator.appliedIdentifiers(db) }) ?? []
            guard let failed = pending.first(where: { !now.contains($0) }) else { throw failure }
            let done = pending.filter { now.contains($0) }
            failure.message = "cannot upgrade the database's schema: migration \(failed) failed and was rolled back, "
                + "so the file is left as it was before it"
                + (done.isEmpty ? "" : " (\(done.joined(separator: ", ")) applied)") + ": \(failure.message)"
            if failed == "v4-outbox-keys-in-memory" && (failure.sqliteCode ?? 0) & 0xff == 13 {  // SQLITE_FULL
                failure.message += ". Migration v4 copies the outbox once: it needs free disk space "
                    + "of about twice the database file (protocol/STORAGE.md, Migrations)"
            }
            throw failure
        }
    }

    /// fsyncs the directory that holds `path`, so that the names of the files
    /// created in it so far (the database, its lock file) are on the disk.
    static func syncDirectory(of path: String) throws(StoreError) {
        do {
            let directory = try AtomicFile.syncDirectory(of: path)
            syncedDirectories.withLock { _ = $0.insert(directory) }
        } catch {
            throw StoreError(.other, error.description)
        }
    }

    /// Directories `syncDirectory` synced in this process (for tests).
    static let syncedDirectories = Mutex<Set<String>>([])

    /// Databases up to this size get `PRAGMA quick_check` before the broker
    /// serves them (well under a second); larger ones are checked after start.
    public static let startupCheckLimit: Int = 64 << 20

    static func damaged(_ path: String, _ detail: String, code: Int32? = nil) -> StoreError {
        StoreError(.corrupt, "\(path) is not a hookbus database or is damaged (\(detail)). "
            + "hookbus will not start over on its own: move the file aside (with its -wal and -shm files) "
            + "to start empty, or restore it from a backup", sqliteCode: code)
    }

    /// Runs `PRAGMA quick_check`; the first problems found, or nil if the file is sound.
    static func quickCheck(_ reader: some DatabaseReader) throws -> String? {
        let lines = try reader.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check(5)") }
        return lines == ["ok"] ? nil : lines.joined(separator: "; ")
    }

    /// Checks the whole file; on damage, publishing answers `unavailable` from
    /// then on (see `damage`) and the message says what to do.
    public func checkInBackground() async throws -> String? {
        // On GRDB's reader queue: a long check never holds a cooperative thread.
        let lines = try await pool.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check(5)") }
        guard lines != ["ok"] else { return nil }
        let problem = lines.joined(separator: "; ")
        let message = Self.damaged(path, problem).message
        damageNote.withLock { $0 = message }
        return message
    }

    /// Set when a check found the file damaged after start.
    public var damage: String? { damageNote.withLock { $0 } }

    /// The value of `PRAGMA synchronous` on the writer connection (2 = FULL, 1 = NORMAL).
    public func writerSynchronous() throws -> Int {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// After a commit, on the writer's thread: finishes a checkpoint that a
    /// background round left almost done, if one is (`Checkpointer`).
    public func finishCheckpointIfDue() {
        checkpointer.finishIfDue(pool)
    }

    /// Whether `finishCheckpointIfDue` has something to do.
    public var checkpointFinishDue: Bool { checkpointer.finishDue }

    /// Closes every connection. Later calls fail.
    public func close() throws {
        // SQLite is not called again once closed: it would read a null connection.
        guard !closed.exchange(true, ordering: .sequentiallyConsistent) else {
            throw StoreError(.other, "\(path): the database is closed")
        }
        defer { lock?.release() }
        checkpointer.close()
        // Fold the WAL into the main file, so a stopped broker leaves one
        // self-contained file (a copy of it alone is a whole backup).
        _ = try pool.writeWithoutTransaction { db in
            checkpointer.uninstall(from: db)
            return try db.checkpoint(.truncate)
        }
        try pool.close()
    }
}
