import GRDB
import GRDBSQLite

/// An event as stored in the outbox.
public struct StoredEvent: Sendable, Equatable {
    public var seq: Int64
    public var id: String
    public var source: String
    public var type: String
    public var subject: String?
    public var time: String
    public var receivedAtMicros: Int64
    public var producer: Producer
    public var json: String
}

extension Store {
    /// `OR IGNORE`, not `ON CONFLICT (source, id) DO NOTHING`: both skip a
    /// duplicate, but a statement that may abort half way (a NOT NULL column
    /// could) needs a statement journal, a copy of every page the statement
    /// changes, so SQLite can undo just that statement. Under `OR IGNORE` no
    /// constraint aborts, so there is none. For the multi-row insert that
    /// copy cost up to a tenth of ingest at 4 × 64, and with ids in random
    /// order (UUIDs) it outgrew memory and went to a temporary file on every
    /// statement: 37–39k → 42–45k events/s. The columns are never NULL
    /// (every value is bound from a non-optional but `subject`); a row that
    /// is skipped all the same is not taken for a duplicate (`storedSeq`).
    static let insertSQL = """
        INSERT OR IGNORE INTO outbox (id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    /// Appends `events` inside the caller's transaction, in order. An event whose
    /// `(source, id)` is already stored (before or earlier in the same batch) is
    /// answered with the stored `seq` and writes nothing.
    ///
    /// The hot path of ingest: prepared statements bound through the sqlite3
    /// C API, up to `rowsPerInsert` events per statement.
    public static func append(_ events: [NewEvent], in db: Database) throws -> [AppendOutcome] {
        var outcomes: [AppendOutcome] = []
        outcomes.reserveCapacity(events.count)
        var start = events.startIndex
        while start < events.endIndex {
            let end = min(start + rowsPerInsert, events.endIndex)
            if end - start == 1 {
                try appendOne(events[start], in: db, to: &outcomes)
            } else {
                try appendRows(events[start..<end], in: db, to: &outcomes)
            }
            start = end
        }
        return outcomes
    }

    /// Events per multi-row INSERT. With AUTOINCREMENT, SQLite writes
    /// `sqlite_sequence` back at the end of every INSERT statement: one
    /// statement for many rows saves that write and a statement start per row
    /// (measured in C: 2.7–3.4 µs → 2.2 µs a row).
    static let rowsPerInsert = 32

    /// `INSERT … VALUES (…), …`, indexed by row count (2 to `rowsPerInsert`).
    private static let multiInsertSQL: [String] = (0...rowsPerInsert).map { rows in
        let values = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: rows).joined(separator: ", ")
        return "INSERT OR IGNORE INTO outbox (id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event) "
            + "VALUES \(values)"
    }

    /// Appends `events` with one statement. Rows are inserted in the order of
    /// VALUES, each with the next seq, so when every row was inserted the
    /// seqs are the `count` up to the last inserted rowid. (RETURNING would say
    /// so row by row, but its temporary table cost more than it saved.) With
    /// duplicates, each event's seq is looked up: above the sequence before
    /// the statement and not yet claimed means stored, anything else duplicate.
    private static func appendRows(_ events: ArraySlice<NewEvent>, in db: Database, to outcomes: inout [AppendOutcome]) throws {
        let sql = multiInsertSQL[events.count]
        let handle = try db.cachedStatement(sql: sql).sqliteStatement
        guard let connection = db.sqliteConnection else { throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "database closed") }
        let before = try sequence(db)
        sqlite3_reset(handle)
        for (row, event) in events.enumerated() {
            let base = Int32(row * 10)
            bindColumns(handle, base, event)
            // Copied (SQLITE_TRANSIENT): every row's bytes must outlive the one step.
            event.json.withUnsafeBytes { json in
                _ = sqlite3_bind_text(handle, base + 10, json.baseAddress?.assumingMemoryBound(to: CChar.self),
                                      Int32(json.count), transient)
            }
        }
        let code = sqlite3_step(handle)
        guard code == SQLITE_DONE else { throw failure(db, handle, code, sql: sql) }
        sqlite3_reset(handle)
        if sqlite3_changes(connection) == Int32(events.count) {
            var seq = sqlite3_last_insert_rowid(connection) - Int64(events.count)
            for event in events {
                seq += 1
                outcomes.append(.stored(seq: seq, id: event.id))
            }
            return
        }
        var claimed = Set<Int64>()
        for event in events {
            let seq = try storedSeq(of: event, in: db)
            if seq > before && claimed.insert(seq).inserted {
                outcomes.append(.stored(seq: seq, id: event.id))
            } else {
                outcomes.append(.duplicate(seq: seq, id: event.id))
            }
        }
    }

    /// The seq stored for `event`'s `(source, id)`: called for a row the
    /// insert skipped. The only skip expected is a duplicate; a row skipped
    /// with nothing stored under its pair fails the transaction, so it is
    /// answered `unavailable` rather than acknowledged as a duplicate.
    private static func storedSeq(of event: NewEvent, in db: Database) throws -> Int64 {
        guard let seq = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT seq FROM outbox WHERE source = ? AND id = ?"),
            arguments: [event.source, event.id]) else {
            throw DatabaseError(resultCode: .SQLITE_CONSTRAINT,
                                message: "the outbox refused event \(event.id) from \(event.source) without storing it")
        }
        return seq
    }

    /// Appends one event with the single-row statement.
    private static func appendOne(_ event: NewEvent, in db: Database, to outcomes: inout [AppendOutcome]) throws {
        let insert = try db.cachedStatement(sql: insertSQL)
        let handle = insert.sqliteStatement
        guard let connection = db.sqliteConnection else { throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "database closed") }
        sqlite3_reset(handle)
        bindColumns(handle, 0, event)
        // The event JSON, the large value, is bound without a copy
        // (SQLITE_STATIC) for this step only: its bytes live through the
        // closure, and it is bound again before the next step.
        let code = event.json.withUnsafeBytes { json in
            _ = sqlite3_bind_text(handle, 10, json.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(json.count), nil)
            return sqlite3_step(handle)
        }
        guard code == SQLITE_DONE else { throw failure(db, handle, code, sql: insertSQL) }
        if sqlite3_changes(connection) == 1 {
            outcomes.append(.stored(seq: sqlite3_last_insert_rowid(connection), id: event.id))
        } else {
            outcomes.append(.duplicate(seq: try storedSeq(of: event, in: db), id: event.id))
        }
        sqlite3_reset(handle)
    }

    /// Binds the row's columns but the event JSON (`base + 1` to `base + 9`):
    /// the callers bind the JSON each in its own way.
    private static func bindColumns(_ handle: OpaquePointer, _ base: Int32, _ event: NewEvent) {
        bind(handle, base + 1, event.id)
        bind(handle, base + 2, event.source)
        bind(handle, base + 3, event.type)
        if let subject = event.subject { bind(handle, base + 4, subject) } else { sqlite3_bind_null(handle, base + 4) }
        bind(handle, base + 5, event.time)
        sqlite3_bind_int64(handle, base + 6, event.receivedAtMicros)
        sqlite3_bind_int64(handle, base + 7, Int64(event.producer.uid))
        sqlite3_bind_int64(handle, base + 8, Int64(event.producer.gid))
        sqlite3_bind_int64(handle, base + 9, Int64(event.producer.pid))
    }

    /// SQLite copies what it is given (the buffers are gone after the call).
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private static func bind(_ handle: OpaquePointer, _ index: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            _ = sqlite3_bind_text(handle, index, UnsafeRawPointer(bytes.baseAddress)?.assumingMemoryBound(to: CChar.self),
                                  Int32(bytes.count), transient)
        }
    }

    /// The error of a failed step, with SQLite's message read before the
    /// statement is reset.
    private static func failure(_ db: Database, _ handle: OpaquePointer, _ code: Int32, sql: String) -> DatabaseError {
        let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
        sqlite3_reset(handle)
        return DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sql)
    }

    /// Runs `body` in one `IMMEDIATE` transaction, through prepared `BEGIN` and
    /// `COMMIT` statements (GRDB's `write` compiles both every time: on the
    /// commit path that was as much as the inserts of a small batch). Rolls back
    /// and rethrows if `body` or the commit throws.
    ///
    /// GRDB does not see these statements: no `TransactionObserver` or
    /// `ValueObservation` learns of these commits (hookbus uses neither).
    static func transaction(_ db: Database, _ body: () throws -> Void) throws {
        try step(db, "BEGIN IMMEDIATE")
        do {
            try body()
            try step(db, "COMMIT")
        } catch {
            // A failed COMMIT may have rolled back already (SQLITE_FULL) or not (SQLITE_BUSY).
            if db.isInsideTransaction && sqlite3_exec(db.sqliteConnection, "ROLLBACK", nil, nil, nil) != SQLITE_OK {
                let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
                throw DatabaseError(message: "\(error); then the rollback failed too: \(message)")
            }
            throw error
        }
    }

    private static func step(_ db: Database, _ sql: String) throws {
        let handle = try db.cachedStatement(sql: sql).sqliteStatement
        let code = sqlite3_step(handle)
        guard code == SQLITE_DONE else { throw failure(db, handle, code, sql: sql) }
        sqlite3_reset(handle)
    }

    /// The highest `seq` the outbox ever handed out, duplicates included
    /// (AUTOINCREMENT's `sqlite_sequence`; 0 before the first insert).
    static func sequence(_ db: Database) throws -> Int64 {
        // Read on the committer's thread twice per commit: stepped directly
        // (GRDB's generic fetch showed in the profile of that thread).
        let sql = "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
        let handle = try db.cachedStatement(sql: sql).sqliteStatement
        defer { sqlite3_reset(handle) }
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return sqlite3_column_int64(handle, 0)
        case SQLITE_DONE: return 0
        case let code: throw failure(db, handle, code, sql: sql)
        }
    }

    /// Appends `events` in one transaction of their own.
    public func append(_ events: [NewEvent]) throws(StoreError) -> [AppendOutcome] {
        do {
            return try pool.write { db in try Store.append(events, in: db) }
        } catch {
            throw StoreError.from(error, path: path)
        }
    }

    /// The highest `seq` ever assigned (0 on an empty outbox).
    public func lastSeq() throws -> Int64 {
        try pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") ?? 0
        }
    }

    /// Events with `seq` in `range`, in `seq` order.
    ///
    /// Read through SQLite's C API: a subscriber behind the in-memory ring of
    /// recent events reads every event here, and GRDB's row decoding cost
    /// several times more than the read itself.
    public func events(in range: ClosedRange<Int64>, limit: Int = 1000) throws -> [StoredEvent] {
        try pool.read { db in
            let handle = try db.cachedStatement(sql: Self.selectEvents).sqliteStatement
            sqlite3_reset(handle)
            defer { sqlite3_reset(handle) }
            sqlite3_bind_int64(handle, 1, range.lowerBound)
            sqlite3_bind_int64(handle, 2, range.upperBound)
            sqlite3_bind_int64(handle, 3, Int64(limit))
            var events: [StoredEvent] = []
            events.reserveCapacity(min(limit, 256))
            while true {
                let code = sqlite3_step(handle)
                if code == SQLITE_DONE { return events }
                guard code == SQLITE_ROW else { throw Self.failure(db, handle, code, sql: Self.selectEvents) }
                events.append(StoredEvent(statement: handle))
            }
        }
    }

    private static let selectEvents = """
        SELECT seq, id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event
        FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?
        """

    /// Bytes of database pages in use (free pages not counted).
    public static func usedBytes(_ db: Database) throws -> Int64 {
        let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
        let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
        let size = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
        return (pages - free) * size
    }

    /// Number of events in the outbox.
    public func eventCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0 }
    }
}

extension StoredEvent {
    /// The stored row of `event`, as the outbox gives it back.
    init(seq: Int64, _ event: NewEvent) {
        self.seq = seq
        id = event.id
        source = event.source
        type = event.type
        subject = event.subject
        time = event.time
        receivedAtMicros = event.receivedAtMicros
        producer = event.producer
        json = String(decoding: event.json, as: UTF8.self)
    }

    /// The current row of `selectEvents`, by position.
    init(statement handle: OpaquePointer) {
        func text(_ column: Int32) -> String? {
            guard let bytes = sqlite3_column_text(handle, column) else { return nil }
            return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(handle, column))), as: UTF8.self)
        }
        seq = sqlite3_column_int64(handle, 0)
        id = text(1) ?? ""
        source = text(2) ?? ""
        type = text(3) ?? ""
        subject = text(4)
        time = text(5) ?? ""
        receivedAtMicros = sqlite3_column_int64(handle, 6)
        producer = Producer(uid: UInt32(truncatingIfNeeded: sqlite3_column_int64(handle, 7)),
                            gid: UInt32(truncatingIfNeeded: sqlite3_column_int64(handle, 8)),
                            pid: Int32(truncatingIfNeeded: sqlite3_column_int64(handle, 9)))
        json = text(10) ?? ""
    }
}
