import GRDBSQLite
import HookbusCore
import Histogram
#if canImport(Glibc)
import Glibc
#endif

/// The floor hookbus is measured against (issue 5's "C loop"): the same rows
/// inserted straight into SQLite through its C API, with the same durability
/// (WAL, synchronous=FULL), into the outbox table as migration `v1-outbox`
/// created it, with UNIQUE(source, id), in transactions of
/// `connections × window` rows, one fsync each. No socket, no parsing, no
/// validation: what is left is the cost of SQLite, its index and the disk.
/// (Since migration v4 the broker keeps the same rule with an in-memory
/// table instead of the index; the floor keeps the index, as the issue
/// defines it.)
///
/// Each row's latency runs from the start of its transaction to the end of its
/// commit, as a producer whose batch was written at once would see it.
struct BenchSQLite {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// The outbox table as migration v1-outbox created it.
    static let schema = """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            source TEXT NOT NULL,
            type TEXT NOT NULL,
            subject TEXT,
            time TEXT NOT NULL,
            received_at INTEGER NOT NULL,
            producer_uid INTEGER NOT NULL,
            producer_gid INTEGER NOT NULL,
            producer_pid INTEGER NOT NULL,
            event TEXT NOT NULL,
            UNIQUE (source, id)
        )
        """
    static let insert = """
        INSERT INTO outbox (id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event)
        VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, id) DO NOTHING
        """

    let path: String
    let batch: Int
    let plan: BenchPlan

    func run() throws(Failure) -> BenchProducerResult {
        // The broker's process-wide SQLite settings, so the floor is measured like the broker.
        SQLiteSetup.apply()
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK,
              let db else {
            throw Failure(description: "cannot open \(path)")
        }
        defer { sqlite3_close_v2(db) }
        func exec(_ sql: String) throws(Failure) {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
                throw Failure(description: "\(sql.prefix(40)): \(String(cString: sqlite3_errmsg(db)))")
            }
        }
        try exec("PRAGMA journal_mode = WAL")
        try exec("PRAGMA synchronous = FULL")
        try exec(Self.schema)
        var statement: OpaquePointer?
        guard sqlite3_prepare_v3(db, Self.insert, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK,
              let statement else {
            throw Failure(description: "cannot prepare the insert: \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(statement) }

        var result = BenchProducerResult()
        var event = BenchEvent(run: plan.run, connection: 0, size: plan.size, randomIDs: plan.randomIDs)
        let source = Array("/bench/\(plan.run)".utf8)
        let type = Array(BenchEvent.type.utf8)
        var id = Array("c0-0000000000".utf8)
        let (uid, gid, pid) = (Int64(getuid()), Int64(getgid()), Int64(getpid()))
        var sent = 0
        BenchClock.sleep(until: plan.start)
        while plan.count.map({ sent < $0 }) ?? true {
            let start = BenchClock.monotonic()
            if start >= plan.stopSendingAt { break }
            let rows = min(batch, (plan.count ?? .max) - sent)
            let micros = Timestamp.nowMicros()
            let time = Array(Timestamp.format(micros: micros).utf8)
            try exec("BEGIN")
            for _ in 0..<rows {
                event.set(counter: sent, sentAtRealtime: start &+ plan.realtimeOffset, warmup: start < plan.measureFrom)
                id.replaceSubrange((id.count - BenchEvent.counterDigits)..., with: event.idCounter)
                for (index, text) in [id, source, type, time].enumerated() {
                    text.withUnsafeBytes { raw in
                        _ = sqlite3_bind_text(statement, Int32(index + 1), raw.baseAddress!.assumingMemoryBound(to: CChar.self),
                                              Int32(raw.count), Self.transient)
                    }
                }
                sqlite3_bind_int64(statement, 5, micros)
                sqlite3_bind_int64(statement, 6, uid)
                sqlite3_bind_int64(statement, 7, gid)
                sqlite3_bind_int64(statement, 8, pid)
                // The event, the large value, is not copied: it is bound for the step only.
                let rc = event.bytes.withUnsafeBytes { raw in
                    sqlite3_bind_text(statement, 9, raw.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(raw.count), nil)
                    return sqlite3_step(statement)
                }
                sqlite3_reset(statement)
                guard rc == SQLITE_DONE else {
                    throw Failure(description: "insert failed: \(String(cString: sqlite3_errmsg(db)))")
                }
                sent += 1
            }
            try exec("COMMIT")
            let end = BenchClock.monotonic()
            result.acknowledged = sent
            if start >= plan.measureFrom {
                result.latency.record(end - start, count: UInt64(rows))
                result.measured += rows
                result.firstReplyAt = min(result.firstReplyAt, end)
                result.lastReplyAt = end
            }
        }
        result.sent = sent
        return result
    }

    /// SQLITE_TRANSIENT: SQLite copies the value before the bind returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}
