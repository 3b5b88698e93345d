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
    private static func databasePath(in directory: URL) -> String {
        directory.appendingPathComponent("hookbus.db").path
    }

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

    @Test("the broker's connections use it")
    func inUse() async throws {
        try await withTemporaryDirectory { directory in
            let store = try Store(path: Self.databasePath(in: directory), durability: .full)
            #expect(Self.vfsName(store).hasPrefix("hookbus"))
            try store.close()
        }
    }

    @Test("with synchronous = NORMAL (no sync to write the buffer out), a reader sees each commit at once, every byte of it",
          arguments: [Durability.normal, .full])
    func readerSeesEveryCommit(durability: Durability) async throws {
        try await withTemporaryDirectory { directory in
            let store = try Store(path: Self.databasePath(in: directory), durability: durability)
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
            let reopened = try Store(path: Self.databasePath(in: directory), durability: durability)
            #expect(try reopened.eventCount() == seen)
            try reopened.close()
        }
    }
}
