import Foundation
import GRDB
import Testing
@testable import HookbusCore

/// The durable delivery state (`Store.apply` of `LedgerOp`s, protocol/STORAGE.md):
/// cursors, retry rows with every attempt's error, dead letters with a copy of
/// the event.
@Suite("Dispatch ledger")
struct DispatchLedgerTests {
    /// A temporary database holding three events, seqs 1 to 3.
    final class Bed {
        let directory: URL
        let store: Store

        init() throws {
            directory = try makeTemporaryDirectory()
            store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
            _ = try store.append((1...3).map { makeEvent(id: "e\($0)", type: "client.added", data: #"{"n":\#($0)}"#) })
        }

        deinit {
            try? store.close()
            try? FileManager.default.removeItem(at: directory)
        }

        func apply(_ ops: [LedgerOp], at micros: Int64) throws {
            try store.pool.write { db in try Store.apply(ops, in: db, nowMicros: micros) }
        }

        func cursor(_ subscriber: String) throws -> Int64? {
            try store.pool.read { db in
                try Int64.fetchOne(db, sql: "SELECT cursor FROM subscriber_cursors WHERE subscriber = ?", arguments: [subscriber])
            }
        }

        func row(_ sql: String, _ arguments: StatementArguments) throws -> Row? {
            try store.pool.read { db in try Row.fetchOne(db, sql: sql, arguments: arguments) }
        }

        /// `errors` JSON as (attempt, error) pairs.
        static func errors(_ json: String) throws -> [String] {
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
            return list.map { "\(($0["attempt"] as? NSNumber)?.intValue ?? -1): \($0["error"] as? String ?? "?")" }
        }
    }

    @Test("a new subscriber's cursor starts where it is first seen; later calls return the stored one")
    func cursorCreatedOnce() throws {
        let bed = try Bed()
        #expect(try bed.store.cursor(for: "notify", initial: 3) == 3)
        #expect(try bed.store.cursor(for: "notify", initial: 0) == 3)
        #expect(try bed.store.cursor(for: "other", initial: 1) == 1)
    }

    @Test("advanceCursor only moves a cursor forward")
    func cursorNeverMovesBack() throws {
        let bed = try Bed()
        try bed.apply([.advanceCursor(subscriber: "notify", seq: 2)], at: 10)
        #expect(try bed.cursor("notify") == 2)
        try bed.apply([.advanceCursor(subscriber: "notify", seq: 1)], at: 20)
        #expect(try bed.cursor("notify") == 2)
        try bed.apply([.advanceCursor(subscriber: "notify", seq: 3)], at: 30)
        #expect(try bed.cursor("notify") == 3)
    }

    @Test("scheduleRetry keeps one row per delivery: the latest attempt and time, every attempt's error, the first failure time")
    func retryRowsAccumulate() throws {
        let bed = try Bed()
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 2, attempt: 1, nextAttemptAt: 1_000, error: "exit 1", replay: false)], at: 100)
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 2, attempt: 2, nextAttemptAt: 3_000, error: "exit 75", replay: false)], at: 200)
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 1, attempt: 1, nextAttemptAt: 2_000, error: "timed out", replay: true)], at: 300)

        #expect(try bed.store.retries(for: "notify") == [
            RetryRow(seq: 1, attempt: 1, nextAttemptAt: 2_000, lastError: "timed out", replay: true),
            RetryRow(seq: 2, attempt: 2, nextAttemptAt: 3_000, lastError: "exit 75", replay: false),
        ], "earliest next attempt first")
        let row = try #require(try bed.row("SELECT errors, first_failed_at FROM retries WHERE subscriber = ? AND seq = ?", ["notify", 2]))
        #expect(try Bed.errors(row["errors"]) == ["1: exit 1", "2: exit 75"])
        #expect(row["first_failed_at"] as Int64 == 100)
        #expect(try bed.store.retries(for: "other").isEmpty)

        try bed.apply([.clearRetry(subscriber: "notify", seq: 2)], at: 400)
        #expect(try bed.store.retries(for: "notify").map(\.seq) == [1])
    }

    @Test("with startedFrom, clearRetry and deadLetter delete the retry row only if it is still the one the attempt started from")
    func deletesOnlyTheRowTheAttemptStartedFrom() throws {
        let bed = try Bed()
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 1, attempt: 1, nextAttemptAt: 1_000, error: "exit 1", replay: true)], at: 100)
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 2, attempt: 1, nextAttemptAt: 1_000, error: "exit 1", replay: true)], at: 100)
        // A replay came for seq 1 while its attempt ran: its time is now 5,000.
        try bed.store.pool.write { db in try db.execute(sql: "UPDATE retries SET next_attempt_at = 5000 WHERE seq = 1") }
        try bed.apply([.clearRetry(subscriber: "notify", seq: 1, startedFrom: 1_000),
                       .clearRetry(subscriber: "notify", seq: 2, startedFrom: 1_000)], at: 200)
        #expect(try bed.store.retries(for: "notify").map(\.seq) == [1], "the replayed row stays; the other goes")
        // A dead letter of an attempt that started from no row (a first attempt)
        // leaves a row written meanwhile; one from the row's own time removes it.
        try bed.apply([.deadLetter(subscriber: "notify", seq: 1, attempts: 1, error: "exit 65", reason: .rejected, replay: false,
                                   startedFrom: Int64.min)], at: 300)
        #expect(try bed.store.retries(for: "notify").map(\.seq) == [1])
        try bed.apply([.deadLetter(subscriber: "notify", seq: 1, attempts: 2, error: "exit 65", reason: .rejected, replay: true,
                                   startedFrom: 5_000)], at: 400)
        #expect(try bed.store.retries(for: "notify").isEmpty)
        #expect(try bed.store.deadLetterCount(for: "notify") == 2)
    }

    @Test("deadLetter moves a retrying delivery to dead_letters with a copy of the event and all its errors, and drops the retry row")
    func deadLetterAfterRetries() throws {
        let bed = try Bed()
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 2, attempt: 1, nextAttemptAt: 1_000, error: "exit 1", replay: false)], at: 100)
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 2, attempt: 2, nextAttemptAt: 3_000, error: "exit 2", replay: false)], at: 200)
        try bed.apply([.deadLetter(subscriber: "notify", seq: 2, attempts: 3, error: "exit 3", reason: .maxAttempts, replay: false)], at: 300)

        #expect(try bed.store.retries(for: "notify").isEmpty)
        #expect(try bed.store.deadLetterCount(for: "notify") == 1)
        let row = try #require(try bed.row("SELECT * FROM dead_letters WHERE subscriber = ?", ["notify"]))
        let stored = try #require(try bed.store.event(seq: 2))
        #expect(row["seq"] as Int64 == 2)
        #expect(row["event_id"] as String == "e2" && row["event_type"] as String == "client.added")
        #expect(row["event"] as String == stored.json)
        #expect(row["attempts"] as Int64 == 3)
        #expect(row["reason"] as String == "max_attempts")
        #expect(row["last_error"] as String == "exit 3")
        #expect(try Bed.errors(row["errors"]) == ["1: exit 1", "2: exit 2", "3: exit 3"])
        #expect(row["first_failed_at"] as Int64 == 100 && row["last_failed_at"] as Int64 == 300)
    }

    @Test("a dead letter retried and dead again keeps every error, the first dead letter's first, and its first failure time")
    func deadLetterRetriedKeepsHistory() throws {
        let bed = try Bed()
        try bed.apply([.scheduleRetry(subscriber: "notify", seq: 2, attempt: 1, nextAttemptAt: 1_000, error: "exit 1", replay: false)], at: 100)
        try bed.apply([.deadLetter(subscriber: "notify", seq: 2, attempts: 2, error: "exit 2", reason: .maxAttempts, replay: false)], at: 200)
        let first = try #require(try bed.row("SELECT id FROM dead_letters WHERE subscriber = ?", ["notify"]))
        let retried = try bed.store.retryDeadLetters(ids: [first["id"]], subscriber: nil, nowMicros: 300)
        #expect(retried.queued.map(\.seq) == [2] && retried.skipped.isEmpty)
        #expect(try bed.store.deadLetterCount(for: "notify") == 0)
        #expect(try bed.store.retries(for: "notify") == [RetryRow(seq: 2, attempt: 0, nextAttemptAt: 300, lastError: "exit 2", replay: true)])

        try bed.apply([.deadLetter(subscriber: "notify", seq: 2, attempts: 1, error: "exit 3", reason: .rejected, replay: true)], at: 400)
        let row = try #require(try bed.row("SELECT * FROM dead_letters WHERE subscriber = ?", ["notify"]))
        #expect(row["id"] as Int64 != first["id"] as Int64)
        #expect(try Bed.errors(row["errors"]) == ["1: exit 1", "2: exit 2", "1: exit 3"])
        #expect(row["first_failed_at"] as Int64 == 100 && row["last_failed_at"] as Int64 == 400)
        #expect(try bed.store.retries(for: "notify").isEmpty)
    }

    @Test("a delivery rejected on its first attempt is dead-lettered with that one error")
    func deadLetterAtOnce() throws {
        let bed = try Bed()
        try bed.apply([
            .deadLetter(subscriber: "picky", seq: 1, attempts: 1, error: "exit 65 (EX_DATAERR)", reason: .rejected, replay: true),
            .advanceCursor(subscriber: "picky", seq: 1),
        ], at: 500)
        let row = try #require(try bed.row("SELECT * FROM dead_letters WHERE subscriber = ?", ["picky"]))
        #expect(row["reason"] as String == "rejected" && row["attempts"] as Int64 == 1)
        #expect(try Bed.errors(row["errors"]) == ["1: exit 65 (EX_DATAERR)"])
        #expect(row["first_failed_at"] as Int64 == 500 && row["last_failed_at"] as Int64 == 500)
        #expect(row["replay"] as Bool == true)
        #expect(try bed.cursor("picky") == 1)
        #expect(try bed.store.deadLetterCount(for: "notify") == 0)
    }
}
