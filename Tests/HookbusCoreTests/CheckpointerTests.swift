import Foundation
import GRDB
import GRDBSQLite
import Logging
import Synchronization
import Testing
@testable import HookbusCore

/// Checkpoints off the committer's thread (Sources/HookbusCore/Outbox/Checkpointer.swift):
/// rounds on their own connection, a finish between two transactions, the
/// WAL starting over from its beginning, and the writer's fallback.
@Suite("Outbox store: background checkpoints")
struct CheckpointerTests {
    private static let quiet = Logger(label: "hookbus.tests") { _ in SwiftLogNoOpLogHandler() }
    /// A commit of one such event writes 3 or 4 WAL pages.
    private static let data = "\"" + String(repeating: "x", count: 600) + "\""

    /// Commits one event through the committer, on the caller's thread
    /// (`inline`, as a lone producer's batch is) or through its queue.
    private static func commit(_ committer: Committer, id: String, inline: Bool) async -> Bool {
        let outcome: Committer.Outcome = await withCheckedContinuation { continuation in
            committer.submit(events: [makeEvent(id: id, data: data)], mayWriteInline: inline) {
                continuation.resume(returning: $0)
            }
        }
        if case .success = outcome { return true }
        return false
    }

    @Test("under a steady stream of commits, with a reader reading, the WAL is checkpointed beside the writer and starts over")
    func walStartsOver() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            let store = try Store(path: path, durability: .normal)
            let committer = Committer(store: store, logger: Self.quiet)
            let reading = Atomic<Bool>(true)
            // A reader such as dispatch: short reads, one after another. A read
            // under way when the writer starts its next transaction keeps the WAL
            // from starting over; the committer must try again.
            async let reads: Int = {
                var count = 0
                while reading.load(ordering: .relaxed) {
                    _ = try? store.lastSeq()
                    count += 1
                    try? await Task.sleep(for: .microseconds(200))
                }
                return count
            }()
            // 3,000 commits of 3 or 4 pages pass `finishAt` (4,000 pages) twice
            // or more; every other one on the committing thread.
            for index in 0..<3_000 {
                guard await Self.commit(committer, id: "e\(index)", inline: index % 2 == 0) else {
                    Issue.record("commit \(index) failed")
                    break
                }
            }
            reading.store(false, ordering: .relaxed)
            #expect(await reads > 0)
            let counts = store.checkpointer.counts
            #expect(counts.lastError == nil)
            #expect(counts.rounds >= 2, "\(counts)")
            // The WAL starts over after a finish, or after a round that found
            // the writer idle long enough to copy all of it. Without the finish,
            // under a steady stream, it only starts over after a checkpoint in the
            // commit, at `fallbackAt` pages.
            #expect(counts.restarts >= 1, "\(counts)")
            #expect(counts.fallbacks == 0, "\(counts)")
            #expect(counts.maxWalPages < Int32(store.checkpointer.fallbackAt), "\(counts)")
            await committer.close()
            try store.close()
            // Everything committed is there, in a sound file.
            let reopened = try Store(path: path, durability: .normal)
            #expect(try reopened.lastSeq() == 3_000)
            #expect(try Store.quickCheck(reopened.pool) == nil)
            try reopened.close()
        }
    }

    @Test("a reader holding an old snapshot keeps the WAL from starting over; the writer checkpoints at the fallback and the WAL starts over once the reader is done")
    func pinnedReaderFallsBack() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            let store = try Store(path: path, durability: .normal)
            let committer = Committer(store: store, logger: Self.quiet)
            guard await Self.commit(committer, id: "first", inline: false) else { Issue.record("first commit failed"); return }
            // A connection of its own, in the middle of a read transaction.
            var reader: OpaquePointer?
            try #require(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, nil) == SQLITE_OK)
            defer { sqlite3_close_v2(reader) }
            func count() -> Int32 {
                var statement: OpaquePointer?
                sqlite3_prepare_v2(reader, "SELECT count(*) FROM outbox", -1, &statement, nil)
                defer { sqlite3_finalize(statement) }
                return sqlite3_step(statement) == SQLITE_ROW ? sqlite3_column_int(statement, 0) : -1
            }
            try #require(sqlite3_exec(reader, "BEGIN", nil, nil, nil) == SQLITE_OK)
            #expect(count() == 1)

            var index = 0
            while store.checkpointer.counts.fallbacks == 0 && index < 6_000 {
                guard await Self.commit(committer, id: "e\(index)", inline: false) else { Issue.record("commit \(index) failed"); return }
                index += 1
            }
            var counts = store.checkpointer.counts
            #expect(counts.fallbacks >= 1, "\(counts)")
            #expect(counts.restarts == 0, "\(counts)")
            #expect(counts.maxWalPages >= store.checkpointer.fallbackAt, "\(counts)")
            #expect(count() == 1, "the reader's snapshot changed")

            try #require(sqlite3_exec(reader, "COMMIT", nil, nil, nil) == SQLITE_OK)
            var more = 0
            while store.checkpointer.counts.restarts == 0 && more < 100 {
                guard await Self.commit(committer, id: "after\(more)", inline: false) else { Issue.record("commit after \(more) failed"); return }
                more += 1
            }
            counts = store.checkpointer.counts
            #expect(counts.restarts >= 1, "\(counts)")
            #expect(count() == Int32(1 + index + more))
            await committer.close()
            try store.close()
        }
    }

    @Test("closing the store folds the WAL into the file; closing it again throws and does not crash")
    func closeTwice() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            let store = try Store(path: path, durability: .normal)
            _ = try store.append((0..<10).map { makeEvent(id: "e\($0)") })
            try store.close()
            let walSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            #expect(walSize == 0)
            #expect(throws: (any Error).self) { try store.close() }
            let reopened = try Store(path: path, durability: .normal)
            #expect(try reopened.lastSeq() == 10)
            try reopened.close()
        }
    }
}
