import Foundation
import GRDB
import Logging
import Testing
@testable import HookbusCore

/// Checkpoints off the committer's thread (Sources/HookbusCore/Outbox/Checkpointer.swift):
/// rounds on their own connection, a finish between two transactions, and the
/// WAL starting over from its beginning.
@Suite("Outbox store: background checkpoints")
struct CheckpointerTests {
    private static let quiet = Logger(label: "hookbus.tests") { _ in SwiftLogNoOpLogHandler() }

    @Test("under a steady stream of commits the WAL is checkpointed beside the writer and starts over after each finish")
    func walStartsOver() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("hookbus.db").path
            let store = try Store(path: path, durability: .normal)
            let committer = Committer(store: store, logger: Self.quiet)
            let data = "\"" + String(repeating: "x", count: 600) + "\""
            // A commit of one event writes 3 or 4 pages: 3,000 of them pass
            // `finishAt` (4,000 pages) twice or more.
            for index in 0..<3_000 {
                guard case .success = await committer.commit([makeEvent(id: "e\(index)", data: data)]) else {
                    Issue.record("commit \(index) failed")
                    return
                }
            }
            let counts = store.checkpointer.counts
            #expect(counts.lastError == nil)
            #expect(counts.rounds >= 2, "\(counts)")
            #expect(counts.finishes >= 1, "\(counts)")
            // Without the finish the WAL only starts over after a checkpoint in
            // the commit, at `fallbackAt` pages.
            #expect(counts.restarts > counts.fallbacks, "\(counts)")
            #expect(counts.maxWalPages < store.checkpointer.fallbackAt, "\(counts)")
            await committer.close()
            try store.close()
            // Everything committed is there, in a sound file.
            let reopened = try Store(path: path, durability: .normal)
            #expect(try reopened.lastSeq() == 3_000)
            #expect(try Store.quickCheck(reopened.pool) == nil)
            try reopened.close()
        }
    }

    @Test("closing the store stops the rounds, removes the hook and folds the WAL into the file")
    func closeUninstalls() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("hookbus.db").path
            let store = try Store(path: path, durability: .normal)
            _ = try store.append((0..<10).map { makeEvent(id: "e\($0)") })
            try store.close()
            // The WAL was folded in and removed at close: one self-contained file.
            let walSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            #expect(walSize == 0)
            let reopened = try Store(path: path, durability: .normal)
            #expect(try reopened.lastSeq() == 10)
            try reopened.close()
        }
    }
}
