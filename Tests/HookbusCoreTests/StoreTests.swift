import Foundation
import CSQLiteSetup
import GRDB
import Testing
@testable import HookbusCore

/// The outbox on a real SQLite file, one temporary directory per test.
@Suite("Outbox store")
struct StoreTests {
    private static func seq(_ outcome: AppendOutcome) -> Int64 {
        switch outcome {
        case .stored(let seq, _), .duplicate(let seq, _): seq
        }
    }

    /// What an append should answer. A new row's seq is only checked to be
    /// larger than every earlier one.
    private enum Expected {
        case stored(String)
        case duplicate(Int64, String)
    }

    private static func check(
        _ outcomes: [AppendOutcome], _ expected: [Expected], above floor: Int64 = 0,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(outcomes.count == expected.count, "\(outcomes)", sourceLocation: sourceLocation)
        var last = floor
        for (outcome, want) in zip(outcomes, expected) {
            switch (outcome, want) {
            case (.stored(let seq, let id), .stored(let wantID)):
                #expect(id == wantID && seq > last, "\(outcome) after seq \(last)", sourceLocation: sourceLocation)
                last = seq
            case (.duplicate(let seq, let id), .duplicate(let wantSeq, let wantID)):
                #expect(id == wantID && seq == wantSeq, "\(outcome)", sourceLocation: sourceLocation)
            default:
                Issue.record("got \(outcome), expected \(want)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("opening a store syncs the directory that holds the database (SQLite syncs it for a new WAL, not for a new database)")
    func directorySyncedAtOpen() async throws {
        try await withTemporaryDirectory { directory in
            let path = databasePath(in: directory)
            let store = try Store(path: path)
            defer { try? store.close() }
            let parent = String(path[..<path.lastIndex(of: "/")!])
            #expect(Store.syncedDirectories.withLock { $0.contains(parent) })
            // A directory that is not there says which and why.
            #expect(throws: StoreError.self) { try Store.syncDirectory(of: "/nonexistent-hookbus-dir/hb.db") }
        }
    }

    @Test("every column reads back as it was given: texts (a subject, an empty one, none, non-ASCII), numbers and the event bytes")
    func columnsRoundTrip() async throws {
        try await withTemporaryDirectory { directory in
            let store = try Store(path: databasePath(in: directory), durability: .normal)
            var events: [NewEvent] = []
            for (index, subject) in [Optional("rack-7/é"), "", nil].enumerated() {
                var event = makeEvent(id: "c\(index)-ü", source: "fleet/ß", data: #"{"n":\#(index),"s":"ünï"}"#)
                event.subject = subject
                event.producer = Producer(uid: 1000 + UInt32(index), gid: 100, pid: 4242)
                events.append(event)
            }
            let outcomes = try store.append(events)
            let stored = try store.events(after: 0, limit: 10)
            try #require(stored.count == 3, "\(outcomes)")
            for (event, row) in zip(events, stored) {
                #expect(row.id == event.id && row.source == event.source && row.type == event.type, "\(row)")
                #expect(row.subject == event.subject && row.time == event.time, "\(row)")
                #expect(row.receivedAtMicros == event.receivedAtMicros && row.producer == event.producer, "\(row)")
                #expect(Array(row.json.utf8) == event.json, "\(row.json)")
            }
        }
    }

    @Test("seq increases across batches, and events come back in seq order as stored")
    func seqOrder() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        var all: [NewEvent] = []
        var outcomes: [AppendOutcome] = []
        for batch in 0..<3 {
            let events = (0..<4).map { makeEvent(id: "b\(batch)-e\($0)", type: "t.\(batch)", data: #"{"n":\#($0)}"#) }
            all += events
            outcomes += try store.append(events)
        }
        #expect(outcomes == all.enumerated().map { .stored(seq: Int64($0.offset + 1), id: $0.element.id) })
        #expect(try store.lastSeq() == 12)
        #expect(try store.eventCount() == 12)

        let stored = try store.events(in: 1...100)
        #expect(stored.map(\.seq) == Array(1...12))
        for (row, event) in zip(stored, all) {
            #expect(row.id == event.id)
            #expect(row.source == event.source)
            #expect(row.type == event.type)
            #expect(row.time == event.time)
            #expect(row.subject == event.subject)
            #expect(row.producer == testProducer)
            #expect(row.receivedAtMicros == testNow)
            #expect(row.json == event.jsonText)
        }
        #expect(try store.events(in: 5...6).map(\.id) == ["b1-e0", "b1-e1"])
        #expect(try store.events(in: 1...12, limit: 3).map(\.seq) == [1, 2, 3])
        try store.close()
    }

    @Test("a read of events stops once their JSON comes to maxBytes, and always returns the first")
    func readBoundedByBytes() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        // Ten events of about 100 KB each.
        let big = String(repeating: "x", count: 100_000)
        let events = (0..<10).map { makeEvent(id: "big-\($0)", data: "\"\(big)\"") }
        _ = try store.append(events)
        let size = events[0].jsonText.utf8.count
        // Up to and including the event that reaches the bound.
        #expect(try store.events(after: 0, limit: 256, maxBytes: 3 * size).map(\.seq) == [1, 2, 3])
        #expect(try store.events(after: 0, limit: 256, maxBytes: 3 * size + 1).map(\.seq) == [1, 2, 3, 4])
        #expect(try store.events(after: 3, limit: 256, maxBytes: 1).map(\.seq) == [4])
        #expect(try store.events(after: 8, limit: 256, maxBytes: 4 * size).map(\.seq) == [9, 10])
        #expect(try store.events(after: 0, limit: 2, maxBytes: 100 * size).map(\.seq) == [1, 2])
        try store.close()
    }

    @Test("events read by seqs come in seq order, once each, without the ones not stored, across reads of 64")
    func readBySeqs() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        _ = try store.append((0..<200).map { makeEvent(id: "s-\($0)") })
        let wanted: [Int64] = [3, 5] + Array(10...150) + [199, 250, 300]
        let read = try store.events(seqs: wanted)
        #expect(read.map(\.seq) == wanted.filter { $0 <= 200 })
        #expect(read.first?.id == "s-2")
        #expect(try store.events(seqs: []).isEmpty)
        #expect(try store.events(seqs: [500]).isEmpty)
        // Bounded by bytes: the first found is always read.
        #expect(try store.events(seqs: [250, 7, 8], maxBytes: 1).map(\.seq) == [7])
        try store.close()
    }

    @Test("the same (source, id) within one batch is stored once; the resend gets the original seq")
    func dedupeWithinBatch() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        let first = makeEvent(id: "e1", data: #"{"v":1}"#)
        let resend = makeEvent(id: "e1", data: #"{"v":2}"#)
        let other = makeEvent(id: "e2")
        let otherSource = makeEvent(id: "e1", source: "elsewhere")
        let outcomes = try store.append([first, other, resend, otherSource])
        Self.check(outcomes, [.stored("e1"), .stored("e2"), .duplicate(1, "e1"), .stored("e1")])
        #expect(outcomes.first == .stored(seq: 1, id: "e1"))
        #expect(try store.eventCount() == 3)
        // The first one wins; the resend wrote nothing.
        #expect(try store.events(in: 1...1).first?.json == first.jsonText)
        try store.close()
    }

    @Test("a resend in a later batch is a duplicate of the original seq")
    func dedupeAcrossBatches() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        #expect(try store.append([makeEvent(id: "a"), makeEvent(id: "b")]) == [.stored(seq: 1, id: "a"), .stored(seq: 2, id: "b")])
        Self.check(try store.append([makeEvent(id: "b"), makeEvent(id: "c"), makeEvent(id: "a")]),
                   [.duplicate(2, "b"), .stored("c"), .duplicate(1, "a")], above: 2)
        #expect(try store.eventCount() == 3)
        try store.close()
    }

    @Test("a row the insert skips with nothing stored under its (source, id) fails the append instead of passing for a duplicate",
          arguments: [1, 3, 40])
    func skippedRowIsNoDuplicate(batch: Int) throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        _ = try store.append([makeEvent(id: "before")])
        // The insert is `OR IGNORE`, which would also skip a row for a reason
        // other than a duplicate; a trigger stands in for such a reason.
        try store.pool.write { db in
            try db.execute(sql: """
                CREATE TRIGGER skip_one BEFORE INSERT ON outbox WHEN NEW.id = 'skipped'
                BEGIN SELECT RAISE(IGNORE); END
                """)
        }
        var events = (0..<batch - 1).map { makeEvent(id: "e\($0)") }
        events.insert(makeEvent(id: "skipped"), at: events.count / 2)
        #expect(throws: StoreError.self) { try store.append(events) }
        // The transaction was rolled back: only the earlier event is stored.
        #expect(try store.eventCount() == 1)
        try store.close()
    }

    @Test("batches longer than one INSERT statement: every event's seq is its row's, duplicates (earlier, within, across statements) answered with the stored seq")
    func multiRowStatements() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        _ = try store.append([makeEvent(id: "old-0"), makeEvent(id: "old-1")])
        let rows = Store.rowsPerInsert
        // All new: whole statements and a single-row remainder.
        let fresh = (0..<(2 * rows + 1)).map { makeEvent(id: "fresh-\($0)", data: #"{"n":\#($0)}"#) }
        let freshOutcomes = try store.append(fresh)
        Self.check(freshOutcomes, fresh.map { .stored($0.id) }, above: 2)
        // Duplicates of earlier rows, of a row in the same statement, and of a
        // row in the previous statement of this batch.
        var mixed = (0..<(rows + 9)).map { makeEvent(id: "mixed-\($0)") }
        mixed[3] = makeEvent(id: "old-1")
        mixed[7] = makeEvent(id: "mixed-2")
        mixed[rows + 4] = makeEvent(id: "mixed-5")
        mixed[rows + 6] = makeEvent(id: "fresh-0")
        let mixedOutcomes = try store.append(mixed)
        #expect(mixedOutcomes.count == mixed.count)
        var expected: [Expected] = []
        var firstSeq: [String: Int64] = [:]
        for (index, event) in mixed.enumerated() {
            switch index {
            case 3: expected.append(.duplicate(2, "old-1"))
            case 7: expected.append(.duplicate(firstSeq["mixed-2"] ?? -1, "mixed-2"))
            case rows + 4: expected.append(.duplicate(firstSeq["mixed-5"] ?? -1, "mixed-5"))
            case rows + 6: expected.append(.duplicate(Self.seq(freshOutcomes[0]), "fresh-0"))
            default:
                expected.append(.stored(event.id))
                if case .stored(let seq, _) = mixedOutcomes[index] { firstSeq[event.id] = seq }
            }
        }
        Self.check(mixedOutcomes, expected, above: Self.seq(freshOutcomes.last!))
        // Every answer names the row that holds the event.
        for (event, outcome) in zip(fresh + mixed, freshOutcomes + mixedOutcomes) {
            let row = try store.events(in: Self.seq(outcome)...Self.seq(outcome)).first
            #expect(row?.id == event.id, "\(outcome) names \(row?.id ?? "no row")")
        }
        #expect(try store.eventCount() == 2 + fresh.count + mixed.count - 4)
        #expect(try store.events(in: Self.seq(freshOutcomes[5])...Self.seq(freshOutcomes[5])).first?.json == fresh[5].jsonText)
        try store.close()
    }

    @Test("dedupe and seq survive closing and reopening the database")
    func dedupeAcrossReopen() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        do {
            let store = try Store(path: path)
            #expect(try store.append([makeEvent(id: "a"), makeEvent(id: "b"), makeEvent(id: "c")]).map(Self.seq) == [1, 2, 3])
            try store.close()
        }
        do {
            let store = try Store(path: path)
            #expect(try store.lastSeq() == 3)
            Self.check(try store.append([makeEvent(id: "b"), makeEvent(id: "d")]), [.duplicate(2, "b"), .stored("d")], above: 3)
            try store.close()
        }
    }

    @Test("with every key's hash the same, each candidate is checked against its row: duplicates found, others stored, across batches, statements and a reopen")
    func everyKeyCollides() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        let collide: OutboxKeys.TagFunction = { _, _ in 7 }
        // By bytes: a Swift dictionary would take "café" in either form for one key.
        var seqs: [[UInt8]: Int64] = [:]
        func key(_ source: String, _ id: String) -> [UInt8] { Array(source.utf8) + [0] + Array(id.utf8) }
        do {
            let store = try Store(path: path, durability: .normal, exclusive: true, keyTag: collide)
            // Ids that differ only at the end, in the source/id boundary, and in Unicode form.
            var events = (0..<(Store.rowsPerInsert + 5)).map { makeEvent(id: "k\($0)") }
            events.append(makeEvent(id: "caf\u{E9}"))
            events.append(makeEvent(id: "cafe\u{301}"))
            events.append(makeEvent(id: "tk1", source: "tes"))
            let outcomes = try store.append(events)
            Self.check(outcomes, events.map { .stored($0.id) })
            for (event, outcome) in zip(events, outcomes) { seqs[key(event.source, event.id)] = Self.seq(outcome) }
            Self.check(try store.append([makeEvent(id: "k3"), makeEvent(id: "new"), makeEvent(id: "new"), makeEvent(id: "caf\u{E9}")]),
                       [.duplicate(seqs[key("test", "k3")]!, "k3"), .stored("new"), .duplicate(Int64(events.count + 1), "new"),
                        .duplicate(seqs[key("test", "caf\u{E9}")]!, "caf\u{E9}")], above: Int64(events.count))
            try store.close()
        }
        let store = try Store(path: path, durability: .normal, exclusive: true, keyTag: collide)
        #expect(store.keyCount == Store.rowsPerInsert + 9)
        Self.check(try store.append([makeEvent(id: "tk1", source: "tes"), makeEvent(id: "cafe\u{301}"), makeEvent(id: "k1", source: "tes")]),
                   [.duplicate(seqs[key("tes", "tk1")]!, "tk1"), .duplicate(seqs[key("test", "cafe\u{301}")]!, "cafe\u{301}"), .stored("k1")],
                   above: Int64(Store.rowsPerInsert + 9))
        try store.close()
    }

    @Test("a store opened with appends: false (hookbus replay --db) does not read the outbox's keys; one that appends does")
    func operatorStoreSkipsKeys() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        do {
            let store = try Store(path: path, durability: .normal)
            _ = try store.append((0..<50).map { makeEvent(id: "e\($0)") })
            try store.close()
        }
        do {
            let store = try Store(path: path, durability: .normal, appends: false)
            #expect(!store.appends && store.keyCount == 0)
            #expect(try store.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") } == 50)
            try store.close()
        }
        let store = try Store(path: path, durability: .normal)
        #expect(store.appends && store.keyCount == 50)
        #expect(try store.append([makeEvent(id: "e7")]) == [.duplicate(seq: 8, id: "e7")])
        try store.close()
    }

    @Test("a transaction that does not commit takes its keys back: the same event is stored afterwards, not called a duplicate of a row that is not there")
    func keysOfARolledBackTransaction() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        struct Abandon: Error {}
        #expect(throws: Abandon.self) {
            try store.pool.writeWithoutTransaction { db in
                try store.transaction(db) {
                    _ = try store.append([makeEvent(id: "a"), makeEvent(id: "b")], in: db)
                    throw Abandon()
                }
            }
        }
        #expect(store.keyCount == 0)
        #expect(try store.append([makeEvent(id: "b"), makeEvent(id: "a")]) == [.stored(seq: 1, id: "b"), .stored(seq: 2, id: "a")])
        #expect(store.keyCount == 2)
        try store.close()
    }

    @Test("rows whose seqs are taken fail the transaction, and leave no key and no seq used")
    func seqMismatchFails() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        _ = try store.append([makeEvent(id: "before")])
        // One more row, stored by a trigger, takes the seq of the row after it.
        try store.pool.write { db in
            try db.execute(sql: """
                CREATE TRIGGER shift AFTER INSERT ON outbox WHEN NEW.id = 'shift'
                BEGIN
                    INSERT INTO outbox (id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event)
                    VALUES ('extra', 'trigger', 't', NULL, '', 0, 0, 0, 0, '{}');
                END
                """)
        }
        #expect(throws: StoreError.self) { try store.append([makeEvent(id: "shift"), makeEvent(id: "after")]) }
        #expect(store.keyCount == 1)
        #expect(try store.eventCount() == 1)
        try store.pool.write { db in try db.execute(sql: "DROP TRIGGER shift") }
        #expect(try store.append([makeEvent(id: "after"), makeEvent(id: "shift")]) == [.stored(seq: 2, id: "after"), .stored(seq: 3, id: "shift")])
        try store.close()
    }

    @Test("pruning an event removes its key: a resend after it is stored again, with a new seq")
    func prunedKeysLeave() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        _ = try store.append((0..<50).map { makeEvent(id: "p\($0)") })
        #expect(store.keyCount == 50)
        #expect(try store.prune(receivedBefore: .max, subscribers: [], chunk: 16) == 50)
        #expect(store.keyCount == 0)
        #expect(try store.append([makeEvent(id: "p7")]) == [.stored(seq: 51, id: "p7")])
        try store.close()
    }

    @Test("a retry row keeps its event from retention even when its subscriber is no longer configured")
    func retryOfRemovedSubscriberKeepsEvent() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        _ = try store.append((0..<4).map { makeEvent(id: "r\($0)") })
        try store.pool.write { db in
            try Store.apply([.scheduleRetry(subscriber: "gone", seq: 2, attempt: 1, nextAttemptAt: 0, error: "boom", replay: false)],
                            in: db, nowMicros: 0)
        }
        // No subscriber configured: nothing holds the others back.
        #expect(try store.prune(receivedBefore: .max, subscribers: []) == 3)
        #expect(try store.pool.read { db in try Int64.fetchAll(db, sql: "SELECT seq FROM outbox") } == [2])
        // Once the retry is settled, the event goes with the next pass.
        try store.pool.write { db in try Store.apply([.clearRetry(subscriber: "gone", seq: 2)], in: db, nowMicros: 0) }
        #expect(try store.prune(receivedBefore: .max, subscribers: []) == 1)
        try store.close()
    }

    @Test("seq is never reused, even after rows are deleted")
    func seqNeverReused() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        _ = try store.append([makeEvent(id: "a"), makeEvent(id: "b")])
        try store.pool.write { db in try db.execute(sql: "DELETE FROM outbox") }
        #expect(try store.append([makeEvent(id: "c")]) == [.stored(seq: 3, id: "c")])
        try store.close()
    }

    @Test("seq is never reused after retention prunes the last events and the broker restarts")
    func seqNeverReusedAfterPruneAndRestart() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        do {
            let store = try Store(path: path, durability: .normal)
            _ = try store.append((0..<5).map { makeEvent(id: "e\($0)") })
            #expect(try store.prune(receivedBefore: .max, subscribers: []) == 5)
            #expect(try store.eventCount() == 0)
            #expect(try store.lastSeq() == 5)
            try store.close()
        }
        let store = try Store(path: path, durability: .normal)
        #expect(try store.lastSeq() == 5)
        #expect(try store.append([makeEvent(id: "e0"), makeEvent(id: "new")]) == [.stored(seq: 6, id: "e0"), .stored(seq: 7, id: "new")])
        try store.close()
    }

    @Test("the outbox has no AUTOINCREMENT: appends leave sqlite_sequence alone (one page less in every commit)")
    func noAutoincrement() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: .normal)
        for id in ["a", "b", "c"] { _ = try store.append([makeEvent(id: id)]) }
        let (definition, sequences) = try store.pool.read { db in
            (try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'") ?? "",
             try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_sequence WHERE name = 'outbox'") ?? -1)
        }
        #expect(!definition.uppercased().contains("AUTOINCREMENT"), "\(definition)")
        #expect(definition.contains("seq INTEGER PRIMARY KEY"), "\(definition)")
        #expect(sequences == 0)
        #expect(try store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") } == "ok")
        #expect(try store.lastSeq() == 3)
        try store.close()
    }

    @Test("durability sets synchronous on the writer connection", arguments: [(Durability.full, 2), (.normal, 1)])
    func durability(_ durability: Durability, synchronous: Int) throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: databasePath(in: directory), durability: durability)
        #expect(try store.writerSynchronous() == synchronous)
        let journal = try store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(journal == "wal")
        try store.close()
    }

    @Test("reopening an existing database keeps its data and applies no migration twice")
    func reopenKeepsMigrations() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        do {
            let store = try Store(path: path)
            _ = try store.append([makeEvent(id: "kept")])
            try store.close()
        }
        for _ in 0..<2 {
            let store = try Store(path: path)
            let applied = try store.pool.read { db in
                try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
            }
            #expect(applied == Migrations.names)
            #expect(Migrations.names.first == "v1-outbox")
            #expect(try store.events(in: 1...10).map(\.id) == ["kept"])
            try store.close()
        }
    }

    @Test("a database left by an older version is migrated forward and keeps its rows")
    func migratesOlderDatabase() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        // An "older hookbus": only the first migration, and events written by
        // hand: the last of them deleted, so sqlite_sequence is above every row.
        do {
            let queue = try DatabaseQueue(path: path)
            try Migrations.migrator.migrate(queue, upTo: "v1-outbox")
            try queue.write { db in
                for id in ["old", "gone"] {
                    try db.execute(sql: """
                        INSERT INTO outbox (id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event)
                        VALUES (?, 'fleet', 'client.added', NULL, '2026-01-01T00:00:00Z', 0, 1, 2, 3, '{"type":"client.added"}')
                        """, arguments: [id])
                }
                try db.execute(sql: "DELETE FROM outbox WHERE id = 'gone'")
            }
            try queue.close()
        }
        let store = try Store(path: path)
        let applied = try store.pool.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
        }
        #expect(applied == Migrations.names)
        let old = try #require(try store.events(in: 1...1).first)
        #expect(old.id == "old")
        #expect(old.producer == Producer(uid: 1, gid: 2, pid: 3))
        #expect(try store.append([makeEvent(id: "old", source: "fleet"), makeEvent(id: "new")]) ==
                [.duplicate(seq: 1, id: "old"), .stored(seq: 3, id: "new")])
        // v4 rebuilt the table without the unique index; the keys are in memory.
        let indexes = try store.pool.read { db in try Row.fetchAll(db, sql: "PRAGMA index_list(outbox)") }
        #expect(indexes.isEmpty, "\(indexes)")
        // v5 moved the highest seq from sqlite_sequence to outbox_seq: still 2
        // (the deleted "gone") when the store opened, so "new" got 3 above.
        #expect(try store.pool.read { db in try Int64.fetchOne(db, sql: "SELECT last FROM outbox_seq") } == 2)
        // sqlite_sequence keeps the outbox's row, frozen (an older hookbusd would fail on it, not reuse seqs).
        #expect(try store.pool.read { db in try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") } == 2)
        try store.close()
        // And again after a restart, with the last row pruned.
        let reopened = try Store(path: path)
        #expect(try reopened.prune(receivedBefore: .max, subscribers: []) == 2)
        try reopened.close()
        let third = try Store(path: path)
        #expect(try third.append([makeEvent(id: "newer")]) == [.stored(seq: 4, id: "newer")])
        try third.close()
    }

    @Test("migration v5 refuses an outbox whose definition it does not know, and leaves the file at v4")
    func v5RefusesUnknownDefinition() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        let definition = """
            CREATE TABLE outbox (seq integer primary key autoincrement, id TEXT NOT NULL, source TEXT NOT NULL,
                type TEXT NOT NULL, subject TEXT, time TEXT NOT NULL, received_at INTEGER NOT NULL,
                producer_uid INTEGER NOT NULL, producer_gid INTEGER NOT NULL, producer_pid INTEGER NOT NULL, event TEXT NOT NULL)
            """
        do {
            let queue = try DatabaseQueue(path: path)
            try Migrations.migrator.migrate(queue, upTo: "v4-outbox-keys-in-memory")
            try queue.write { db in
                try db.execute(sql: "DROP TABLE outbox")
                try db.execute(sql: definition)
            }
            try queue.close()
        }
        let error = #expect(throws: StoreError.self) { try Store(path: path) }
        let message = error?.message ?? ""
        #expect(message.contains("migration v5-outbox-seq-without-autoincrement failed and was rolled back"), "\(message)")
        #expect(message.contains("definition is not the one migration v4 created"), "\(message)")
        let queue = try DatabaseQueue(path: path)
        let (applied, text, tables, check) = try queue.read { db in
            (try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid"),
             try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'outbox'"),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master WHERE name = 'outbox_seq'"),
             try String.fetchOne(db, sql: "PRAGMA quick_check"))
        }
        try queue.close()
        #expect(applied.last == "v4-outbox-keys-in-memory")
        #expect(text == definition)
        #expect(tables == 0)
        #expect(check == "ok")
    }

    @Test("migration v5 works on a connection in SQLite's defensive mode (which ignores writable_schema), and leaves it on")
    func v5UnderDefensiveMode() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let queue = try DatabaseQueue(path: databasePath(in: directory))
        try Migrations.migrator.migrate(queue, upTo: "v4-outbox-keys-in-memory")
        func defensive() -> Int32 {
            queue.inDatabase { db in
                var on: Int32 = -1
                _ = hookbus_sqlite_set_defensive(UnsafeMutableRawPointer(db.sqliteConnection), -1, &on)
                return on
            }
        }
        queue.inDatabase { db in
            _ = hookbus_sqlite_set_defensive(UnsafeMutableRawPointer(db.sqliteConnection), 1, nil)
        }
        #expect(defensive() == 1)
        try Migrations.migrator.migrate(queue)
        let text = try queue.read { db in try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'outbox'") } ?? ""
        #expect(!text.uppercased().contains("AUTOINCREMENT"), "\(text)")
        #expect(defensive() == 1)
        try queue.close()
    }

    @Test("a database migrated by a newer hookbusd is refused, naming the migrations this one does not know, and left as it is")
    func newerSchemaRefused() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        do {
            let store = try Store(path: path)
            _ = try store.append([makeEvent(id: "kept")])
            try store.close()
        }
        do {
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v9-from-the-future')") }
            try queue.close()
        }
        let error = #expect(throws: StoreError.self) { try Store(path: path) }
        let message = error?.message ?? ""
        #expect(message.contains(path) && message.contains("v9-from-the-future") && message.contains("newer"), "\(message)")
        let queue = try DatabaseQueue(path: path)
        let count = try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") }
        try queue.close()
        #expect(count == 1)
    }

    @Test("a database path in a directory that does not exist is refused, naming the directory; nothing is created")
    func missingDirectory() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("data").path
        let error = #expect(throws: StoreError.self) { try Store(path: missing + "/hookbus.db") }
        let message = error?.message ?? ""
        #expect(message.contains("the directory \(missing) does not exist"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: missing))
    }

    @Test("a second Store on the same path is refused as locked, until the first is gone")
    func secondStoreLocked() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        do {
            let first = try Store(path: path)
            withExtendedLifetime(first) {
                let error = #expect(throws: StoreError.self) { try Store(path: path) }
                #expect(error?.kind == .locked)
                #expect(error?.message.contains(path) == true)
                #expect(error?.message.contains("in use") == true)
            }
            try first.close()
        }
        // The lock went with the first store.
        let again = try Store(path: path)
        try again.close()
    }

    @Test("a file that is not a database is refused as corrupt, with advice, and left untouched")
    func garbageFile() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = databasePath(in: directory)
        let garbage = Data(String(repeating: "this is not a database, just text.\n", count: 120).prefix(4096).utf8)
        #expect(garbage.count == 4096)
        try garbage.write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: StoreError.self) { try Store(path: path) }
        #expect(error?.kind == .corrupt)
        #expect(error?.sqliteCode != nil)
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("move the file aside") == true)
        #expect(error?.message.contains("backup") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage)
    }
}
