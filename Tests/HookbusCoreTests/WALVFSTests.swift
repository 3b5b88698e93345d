import Foundation
import GRDB
import GRDBSQLite
import Testing
@testable import HookbusCore

/// The broker's VFS (Sources/CSQLiteSetup/walvfs.c), which gathers the frames
/// of each WAL transaction into one write: every transaction must reach the
/// file before another connection can see it, whatever its size.
@Suite("Outbox store: the WAL write-gathering VFS")
struct WALVFSTests {
    /// The name SQLite reports for the VFS of the writer's main database file.
    private static func vfsName(_ store: Store) -> String {
        store.pool.writeWithoutTransaction { db in
            var name: UnsafeMutablePointer<CChar>?
            let rc = sqlite3_file_control(db.sqliteConnection, "main", SQLITE_FCNTL_VFSNAME, &name)
            defer { sqlite3_free(name) }
            guard rc == SQLITE_OK, let name else { return "(none: \(rc))" }
            return String(cString: name)
        }
    }

    @Test("the broker's database has its WAL writes gathered; another database in the same process does not")
    func inUse() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            let store = try Store(path: path, durability: .full)
            #expect(Self.vfsName(store) == "hookbus/unix")
            #expect(SQLiteSetup.gathersWALWrites(of: path))
            // The same file named another way is the same database.
            #expect(SQLiteSetup.gathersWALWrites(of: directory.path + "/./hookbus.db"))
            let before = SQLiteSetup.gatheredWriteOuts
            _ = try store.append([makeEvent(id: "gathered")])
            #expect(SQLiteSetup.gatheredWriteOuts > before, "the commit's frames went out as one buffer")
            try store.close()

            // A program that embeds hookbus keeps stock SQLite for its own databases.
            let other = directory.appendingPathComponent("other.db").path
            #expect(!SQLiteSetup.gathersWALWrites(of: other))
            let queue = try DatabaseQueue(path: other)
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "CREATE TABLE t (x)")
                for index in 0..<20 { try db.execute(sql: "INSERT INTO t VALUES (?)", arguments: [index]) }
            }
            try queue.close()
        }
    }

    @Test("a transaction that spills pages and changes them again is whole in the files the moment it commits (a crash then loses nothing)")
    func spilledTransactionIsWholeOnDisk() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            // NORMAL: no sync after the commit writes the buffer out for us.
            let store = try Store(path: path, durability: .normal)
            try store.pool.writeWithoutTransaction { db in
                // No checkpoint, whose reads would write the buffer out; a small
                // page cache, so the transaction spills and SQLite rewrites
                // frames it already wrote (and then their checksums).
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = 50")
            }
            _ = try store.append([makeEvent(id: "first")])
            let pad = String(repeating: "s", count: 1_500)
            let batch = (0..<600).map { makeEvent(id: "big-\($0)", data: #"{"n":\#($0),"pad":"\#(pad)"}"#) }
            _ = try store.append(batch)

            // What a crash would leave: the database and its WAL as they are on
            // disk now, without the shared-memory index, which recovery rebuilds
            // from the WAL's frames and checksums.
            let copy = directory.appendingPathComponent("crashed.db").path
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            try FileManager.default.copyItem(atPath: path + "-wal", toPath: copy + "-wal")
            let recovered = try DatabaseQueue(path: copy)
            let count = try recovered.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox WHERE id != ''") ?? 0 }
            let stored = try store.eventCount()
            #expect(count == stored, "recovered \(count) of \(stored) stored events")
            #expect(stored >= 601)
            try recovered.close()
            try store.close()
        }
    }

    @Test("under synchronous = NORMAL (no sync writes the buffer out) and FULL, a reader sees each commit at once, every byte of it",
          arguments: [Durability.normal, .full])
    func readerSeesEveryCommit(durability: Durability) async throws {
        try await withTemporaryDirectory { directory in
            let store = try Store(path: databasePath(in: directory), durability: durability)
            var seen = 0
            // Batches from one event to far more than the buffer (1 MiB) and
            // than one write of the default VFS (128 KiB).
            for (round, batch) in [1, 2, 7, 40, 300, 1_100].enumerated() {
                let pad = String(repeating: "p", count: 900 + round * 37)
                let events = (0..<batch).map { makeEvent(id: "r\(round)-\($0)", data: #"{"n":\#($0),"pad":"\#(pad)"}"#) }
                _ = try store.append(events)
                // A reader connection (the pool's), right after the commit.
                let stored = try store.events(after: Int64(seen), limit: 10_000)
                #expect(stored.map(\.id) == events.map(\.id), "round \(round)")
                #expect(stored.map(\.json) == events.map(\.jsonText), "round \(round): the bytes read back")
                seen += batch
            }
            try store.close()
            // And after closing (the WAL folded into the file), from scratch.
            let reopened = try Store(path: databasePath(in: directory), durability: durability)
            #expect(try reopened.eventCount() == seen)
            try reopened.close()
        }
    }
}
