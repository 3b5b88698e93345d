import Foundation
import GRDB
@testable import HookbusCore
import Testing

/// A database written by an older hookbus, started on by this one.
@Suite("Upgrade")
struct UpgradeTests {
    @Test("a schema-v2 database is upgraded at start (v4 rebuilds the outbox), keeping its events, seqs and idempotency; without room for v4, startup stops, names the migration that failed, the one applied before it and the reason, and the file keeps v3")
    func upgradesOlderDatabase() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let path = scratch.path("hb.db")
        try Self.writeOlderDatabase(at: path)
        let look = { try Self.look(at: path) }
        let before = try look()
        #expect(before.events == 200 && !before.migrations.contains("v4-outbox-keys-in-memory"))

        // An offline dry run would upgrade the file to read it: it refuses instead, and leaves it.
        let dry = try await ToolRun.run(try TestBinaries.hookbus(), ["replay", "--db", path, "--from-seq", "1", "--dry-run"], scratch: scratch)
        #expect(!dry.signaled && dry.status == 1 && dry.stderr.contains("needs an upgrade first (v3-subscriber-kinds, "), "\(dry)")
        #expect(try look().migrations == before.migrations)

        // No room for the copy: the file may grow by 10 pages only.
        let environment = ProcessInfo.processInfo.environment.merging(["HOOKBUS_MAX_PAGE_COUNT": "\(before.pages + 10)"]) { _, new in new }
        let refused = try await ToolRun.run(try TestBinaries.hookbusd(), ["--socket", scratch.path("s.sock"), "--db", path],
                                            scratch: scratch, environment: environment)
        #expect(!refused.signaled && refused.status != 0, "\(refused)")
        for part in [path, "migration v4-outbox-keys-in-memory failed", "(v3-subscriber-kinds applied)", "full", "left as it was",
                     "free disk space"] {
            #expect(refused.stderr.contains(part), "no \"\(part)\" in: \(refused.stderr)")
        }
        let after = try look()
        #expect(after.migrations == before.migrations + ["v3-subscriber-kinds"] && after.events == 200, "\(after)")

        // With room: upgraded; the old events keep their seqs and their (source, id).
        let broker = try await scratch.startBroker()
        let client = try broker.connect()
        let resend = try client.call(EventLine.make(type: "old.event", source: "old", id: "o7"))
        #expect(resend.ok && resend.duplicate && resend.seq == 8, "\(resend)")
        let fresh = try client.call(EventLine.make(type: "old.event", source: "old", id: "o200"))
        #expect(fresh.ok && !fresh.duplicate && (fresh.seq ?? 0) > 200, "\(fresh)")
        let status = try await broker.stop()
        #expect(status == 0, "\(broker.log)")
        let upgraded = try look()
        #expect(upgraded.migrations == Migrations.names, "\(upgraded)")
    }

    /// An "older hookbus": migrations up to v2, 200 events written by hand.
    private static func writeOlderDatabase(at path: String) throws {
        let queue = try DatabaseQueue(path: path)
        try Migrations.migrator.migrate(queue, upTo: "v2-delivery")
        try queue.write { db in
            let pad = String(repeating: "p", count: 2000)
            // Received now: retention (7 days) would prune older ones at start.
            let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
            for n in 0..<200 {
                try db.execute(sql: """
                    INSERT INTO outbox (id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event)
                    VALUES (?, 'old', 'old.event', NULL, '2026-01-01T00:00:00Z', ?, 0, 0, 0, ?)
                    """, arguments: ["o\(n)", now, #"{"type":"old.event","source":"old","id":"o\#(n)","data":"\#(pad)"}"#])
            }
        }
        try queue.close()
    }

    /// The file's applied migrations, its number of events and of pages.
    private static func look(at path: String) throws -> (migrations: [String], events: Int, pages: Int) {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            (try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid"),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? -1,
             try Int.fetchOne(db, sql: "PRAGMA page_count") ?? -1)
        }
    }
}
