import Dispatch
import GRDB
import GRDBSQLite
import Synchronization

/// Folds the WAL into the database file on a thread of its own, so that the
/// committer's thread does not do it inside a commit.
///
/// SQLite's automatic checkpoint runs in the COMMIT of the transaction that
/// takes the WAL past 1,000 pages: it copies the WAL's pages into the
/// database and fsyncs both, about a millisecond and a half at 20,000 events
/// a second, 40 times a second, and every event that arrives meanwhile waits.
/// Here the writer's WAL hook (`install`) replaces it:
///
/// - every `roundEvery` new WAL pages, a round on a queue of its own copies
///   what is committed into the database with its own connection (a PASSIVE
///   checkpoint, which never blocks the writer or readers) and fsyncs the
///   database file;
/// - a WAL is only started over from its beginning when a checkpoint copied
///   all of it, which a round done beside a busy writer never does. So once the
///   WAL is `finishAt` pages long, after a round, the committer finishes it
///   between two transactions (`finishIfDue`): it copies the few pages
///   committed during the round and fsyncs, and the next transaction starts
///   the WAL over. A reader in the middle of a read can keep the WAL from
///   starting over (or the finish from copying all of it): the committer
///   then tries again after each group until the WAL has started over, as
///   SQLite's own checkpoint tries after each commit;
/// - at `fallbackAt` pages (the rounds fell behind, writes came from outside
///   the committer, or a reader holds an old snapshot) the writer checkpoints
///   in the commit, as SQLite would.
///
/// Nothing here decides what is durable: the WAL holds every committed page
/// until a checkpoint has copied and synced it, as with SQLite's own.
final class Checkpointer: Sendable {
    /// New WAL pages between two rounds.
    let roundEvery: Int32
    /// WAL pages from which the committer finishes a checkpoint after a round.
    let finishAt: Int32
    /// WAL pages from which the writer checkpoints in the commit itself.
    let fallbackAt: Int32

    private struct State {
        /// A round is queued or running.
        var inFlight = false
        /// The WAL's length when the last round was asked for.
        var lastRound: Int32 = 0
        /// How many times the WAL started over: a round that ends after a
        /// restart it did not see must not ask for a finish.
        var generation = 0
        /// A round ended with the WAL at least `finishAt` pages long.
        var finishDue = false
        /// The last failure of a round (they are retried with the next one).
        var lastError: String?
        var rounds = 0
        var finishes = 0
        var fallbacks = 0
        var restarts = 0
        var walPages: Int32 = 0
        var maxWalPages: Int32 = 0
        var closed = false
        /// The hook's context, a retained `WeakBox`, while the hook is installed.
        nonisolated(unsafe) var hook: UnsafeMutableRawPointer?
        /// The database file's full path, as the writer opened it.
        var path: String?
    }

    private let durability: Durability
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "hookbus.checkpointer")
    /// The round's own connection, opened by the first round; only touched on `queue`.
    private nonisolated(unsafe) var connection: OpaquePointer?

    /// `roundEvery`: a round delays the commits beside it (it syncs the WAL
    /// before copying and the database after), so shorter rounds more often
    /// shorten the tail. At 20k events/s with an in-process hook, 5
    /// interleaved pairs, publish-to-hook p99 1,376 / 1,294 / 1,497 / 1,344 /
    /// 1,395 µs with 500 pages against 1,121 / 1,628 / 1,068 / 1,137 /
    /// 1,266 µs with 200 (2,000 pages: 1.9–2.2 ms); 4 × 64 no slower.
    init(durability: Durability, roundEvery: Int32 = 200, finishAt: Int32 = 4_000, fallbackAt: Int32 = 8_000) {
        self.durability = durability
        self.roundEvery = roundEvery
        self.finishAt = finishAt
        self.fallbackAt = fallbackAt
    }

    deinit {
        if let connection { sqlite3_close_v2(connection) }
    }

    /// Puts this checkpointer in place of SQLite's automatic checkpoint on the
    /// writer connection `db`. The hook holds it weakly: once it is gone, the
    /// writer checkpoints in the commit again, every 1,000 pages.
    func install(on db: Database) {
        guard let writer = db.sqliteConnection else { return }
        let box = Unmanaged.passRetained(WeakBox(self)).toOpaque()
        let path = sqlite3_db_filename(writer, "main").map { String(cString: $0) }
        state.withLock { state in
            state.hook = box
            state.path = path
        }
        sqlite3_wal_hook(writer, { context, db, name, pages in
            let box = Unmanaged<WeakBox>.fromOpaque(context!).takeUnretainedValue()
            guard let checkpointer = box.checkpointer else {
                if pages >= 1_000 { _ = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil) }
                return SQLITE_OK
            }
            checkpointer.committed(walPages: pages, writer: db, name: name)
            return SQLITE_OK
        }, box)
    }

    /// Gives SQLite's automatic checkpoint back to the writer connection `db`.
    func uninstall(from db: Database) {
        // GRDB still runs the closure on a closed connection (a second close).
        guard let writer = db.sqliteConnection else { return }
        sqlite3_wal_autocheckpoint(writer, 1_000)
        if let box = state.withLock({ state in defer { state.hook = nil }; return state.hook }) {
            Unmanaged<WeakBox>.fromOpaque(box).release()
        }
    }

    private final class WeakBox: Sendable {
        weak let checkpointer: Checkpointer?
        init(_ checkpointer: Checkpointer) { self.checkpointer = checkpointer }
    }

    /// Called on the writer's thread after each commit, with the WAL's length.
    private func committed(walPages pages: Int32, writer: OpaquePointer?, name: UnsafePointer<CChar>?) {
        enum Step { case none, round(generation: Int), fallback }
        let step = state.withLock { state -> Step in
            // Between two restarts the WAL only grows.
            if pages < state.walPages {
                state.restarts += 1
                state.generation += 1
                state.lastRound = 0
                state.finishDue = false
            }
            state.walPages = pages
            state.maxWalPages = max(state.maxWalPages, pages)
            if pages >= fallbackAt {
                state.fallbacks += 1
                return .fallback
            }
            guard !state.closed, !state.inFlight, pages >= state.lastRound + roundEvery else { return .none }
            state.lastRound = pages
            state.inFlight = true
            return .round(generation: state.generation)
        }
        switch step {
        case .none: break
        case .round(let generation): queue.async { self.round(generation: generation) }
        case .fallback: _ = sqlite3_wal_checkpoint_v2(writer, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        }
    }

    /// One round, on `queue`, asked for in WAL `generation`.
    private func round(generation: Int) {
        // `close` may have come between the decision and this.
        guard let path = state.withLock({ $0.closed ? nil : $0.path }) else {
            state.withLock { $0.inFlight = false }
            return
        }
        var walPages: Int32 = 0
        let outcome = copyAndSync(path: path, walPages: &walPages)
        state.withLock { state in
            state.inFlight = false
            state.rounds += 1
            switch outcome {
            case .copied:
                state.lastError = nil
                // Not if the WAL started over meanwhile: `walPages` is the old one's.
                if walPages >= finishAt && state.generation == generation && !state.closed { state.finishDue = true }
            case .busy:
                break
            case .failed(let message):
                state.lastError = message
            }
        }
    }

    private enum Outcome {
        case copied
        /// Another checkpoint (the committer's finish, the writer's fallback) was under way.
        case busy
        case failed(String)
    }

    private func copyAndSync(path: String, walPages: inout Int32) -> Outcome {
        if connection == nil {
            var opened: OpaquePointer?
            let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX
            guard sqlite3_open_v2(path, &opened, flags, nil) == SQLITE_OK, let opened else {
                let message = opened.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
                sqlite3_close_v2(opened)
                return .failed("opening \(path): \(message)")
            }
            sqlite3_busy_timeout(opened, 5_000)
            // The checkpoint's syncs follow this; reading the schema opens the WAL
            // (a connection that has not would checkpoint nothing and say OK).
            let pragma = durability == .full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL"
            let rc = sqlite3_exec(opened, pragma + "; SELECT count(*) FROM sqlite_master", nil, nil, nil)
            guard rc == SQLITE_OK else {
                let message = String(cString: sqlite3_errmsg(opened))
                sqlite3_close_v2(opened)
                return .failed("opening \(path): \(message)")
            }
            connection = opened
        }
        var copied: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, &walPages, &copied)
        if rc == SQLITE_BUSY { return .busy }
        guard rc == SQLITE_OK else { return .failed("checkpoint: \(String(cString: sqlite3_errmsg(connection)))") }
        guard walPages >= 0 else { return .failed("checkpoint: the WAL of \(path) is not open") }
        // A checkpoint that did not reach the end of the WAL leaves the pages it
        // copied unsynced; sync them now, so the committer's finish (which syncs
        // the database before the WAL can start over) has only a few left.
        var file: UnsafeMutablePointer<sqlite3_file>?
        if sqlite3_file_control(connection, "main", SQLITE_FCNTL_FILE_POINTER, &file) == SQLITE_OK,
           let file, let sync = file.pointee.pMethods?.pointee.xSync {
            let rc = sync(file, SQLITE_SYNC_NORMAL)
            if rc != SQLITE_OK { return .failed("syncing \(path): SQLite error \(rc)") }
        }
        return .copied
    }

    /// Whether `finishIfDue` has something to do.
    var finishDue: Bool { state.withLock { $0.finishDue } }

    /// Called by the committer between transactions, through the writer:
    /// copies what the last round left and syncs, so the next transaction
    /// starts the WAL over. Does nothing unless a round ended with a long WAL;
    /// stays due until the hook sees the WAL start over.
    func finishIfDue(_ pool: DatabasePool) {
        let due = state.withLock { state -> Bool in
            guard state.finishDue, !state.closed else { return false }
            state.finishes += 1
            return true
        }
        guard due else { return }
        pool.writeWithoutTransaction { db in
            // Nil once the pool is closed (a finish queued by an inline write).
            guard let writer = db.sqliteConnection else { return }
            _ = sqlite3_wal_checkpoint_v2(writer, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        }
    }

    /// No round starts after this; returns once the one under way has ended.
    func close() {
        state.withLock { $0.closed = true; $0.finishDue = false }
        queue.sync {
            if let connection { sqlite3_close_v2(connection) }
            connection = nil
        }
    }

    /// What happened so far (for tests).
    struct Counts {
        var rounds: Int
        var finishes: Int
        var fallbacks: Int
        /// Times the WAL was seen to start over from its beginning.
        var restarts: Int
        /// The longest WAL seen after a commit, in pages.
        var maxWalPages: Int32
        var lastError: String?
    }

    var counts: Counts {
        state.withLock { Counts(rounds: $0.rounds, finishes: $0.finishes, fallbacks: $0.fallbacks, restarts: $0.restarts, maxWalPages: $0.maxWalPages, lastError: $0.lastError) }
    }
}
