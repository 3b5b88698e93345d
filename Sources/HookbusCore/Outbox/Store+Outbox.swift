import GRDB
import GRDBSQLite
#if canImport(Glibc)
import Glibc
#endif

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
    /// Appends `events` inside the caller's transaction (`transaction`), in
    /// order. An event whose `(source, id)` is already stored (before or
    /// earlier in the same batch) is answered with the stored `seq` and writes
    /// nothing.
    ///
    /// The hot path of ingest: prepared statements bound through the sqlite3
    /// C API, up to `rowsPerInsert` events per statement.
    public func append(_ events: [NewEvent], in db: Database) throws -> [AppendOutcome] {
        // Without its keys it would store a resend twice: a programming error.
        precondition(appends, "Store.append on a store opened with appends: false")
        return try keys.withLock { keys in try Self.append(events, in: db, keys: &keys) }
    }

    /// `append`, with the idempotency entries in `keys`. Each event's
    /// `(source, id)` is looked up first: a candidate `seq` is a duplicate
    /// only if its row (or, for an event earlier in this call, that event)
    /// has the same bytes. The others get the next seqs (`keys.lastSeq`), in
    /// order, and are inserted after, each with its `seq`.
    static func append(_ events: [NewEvent], in db: Database, keys: inout OutboxKeys) throws -> [AppendOutcome] {
        let before = keys.lastSeq
        var outcomes: [AppendOutcome] = []
        outcomes.reserveCapacity(events.count)
        /// The events to insert, by index, in seq order: the first gets `before + 1`.
        var fresh: [Int] = []
        fresh.reserveCapacity(events.count)
        // Every tag first, each slot prefetched, so the cache misses overlap.
        var tags: [UInt32] = []
        tags.reserveCapacity(events.count)
        // (By index, not `for event in events`: a copy of a NewEvent is a
        // retain and a release for each of its six strings and arrays.)
        for index in events.indices {
            let tag = events[index].withKeyBytes { keys.tag(source: $0, id: $1) }
            keys.prefetch(tag: tag)
            tags.append(tag)
        }
        for index in events.indices {
            let tag = tags[index]
            let match = try events[index].withKeyBytes { source, id in
                try keys.first(tag: tag) { seq in
                    if seq > before {
                        // An event of this call, not inserted yet.
                        let position = Int(seq - before) - 1
                        guard position < fresh.count else { return false }
                        return events[fresh[position]].withKeyBytes { $0.elementsEqual(source) && $1.elementsEqual(id) }
                    }
                    return try isStored(seq: seq, source: source, id: id, in: db)
                }
            }
            if let match {
                outcomes.append(.duplicate(seq: match, id: events[index].id))
                continue
            }
            let seq = before + Int64(fresh.count) + 1
            keys.insert(tag: tag, seq: seq)
            fresh.append(index)
            outcomes.append(.stored(seq: seq, id: events[index].id))
        }
        var arena: [UInt8] = []
        var start = 0
        while start < fresh.count {
            let end = min(start + rowsPerInsert, fresh.count)
            try insertRows(events, fresh[start..<end], through: before + Int64(end), in: db, arena: &arena)
            start = end
        }
        return outcomes
    }

    /// Events per multi-row INSERT: one statement for many rows saves a
    /// statement start per row (measured in C, when the outbox still had
    /// AUTOINCREMENT, which also wrote `sqlite_sequence` per statement:
    /// 2.7–3.4 µs → 2.2 µs a row).
    static let rowsPerInsert = 32

    /// The outbox has no unique index: `(source, id)` is checked in memory
    /// (`OutboxKeys`) before a row is inserted, so a duplicate is never
    /// inserted. `OR IGNORE` all the same: a statement that may abort half way
    /// (a NOT NULL column could) needs a statement journal, a copy of every
    /// page the statement changes, so SQLite can undo just that statement;
    /// under `OR IGNORE` nothing aborts, so there is none (for the multi-row
    /// insert that copy cost up to a tenth of ingest). The columns are never
    /// NULL (every value is bound from a non-optional but `subject`); a row
    /// skipped all the same fails the transaction (`insertRows`).
    ///
    /// Indexed by row count (1 to `rowsPerInsert`).
    private static let multiInsertSQL: [String] = (0...rowsPerInsert).map { rows in
        let values = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: rows).joined(separator: ", ")
        return "INSERT OR IGNORE INTO outbox (seq, id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event) "
            + "VALUES \(values)"
    }
    private static let columnsPerRow: Int32 = 11

    /// Inserts `events[rows]` with one statement, with the seqs up to `last`
    /// in the order of VALUES. Every row must be inserted, or the transaction
    /// fails (a row whose seq is taken would be ignored): acknowledging an
    /// event that was not stored would be worse than answering `unavailable`.
    ///
    /// Every text is copied once into `arena` and bound from there without a
    /// copy (SQLITE_STATIC) for the one step: a copying bind costs SQLite a
    /// malloc, a memcpy and a free per value, five per row (in C, 32-row
    /// statements: 1.12 → 0.94 µs a row).
    private static func insertRows(
        _ events: [NewEvent], _ rows: ArraySlice<Int>, through last: Int64, in db: Database, arena: inout [UInt8]
    ) throws {
        guard let connection = db.sqliteConnection else { throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "database closed") }
        let sql = multiInsertSQL[rows.count]
        let handle = try db.cachedStatement(sql: sql).sqliteStatement
        sqlite3_reset(handle)
        arena.removeAll(keepingCapacity: true)
        for row in rows {
            arena.append(contentsOf: events[row].id.utf8)
            arena.append(contentsOf: events[row].source.utf8)
            arena.append(contentsOf: events[row].type.utf8)
            if let subject = events[row].subject { arena.append(contentsOf: subject.utf8) }
            arena.append(contentsOf: events[row].time.utf8)
            arena.append(contentsOf: events[row].json)
        }
        let code = arena.withUnsafeBytes { arena -> Int32 in
            // Not empty: every event has a type.
            guard let start = arena.baseAddress?.assumingMemoryBound(to: CChar.self) else { return SQLITE_MISUSE }
            var offset = 0
            var bound = SQLITE_OK
            func text(_ index: Int32, _ count: Int) {
                let code = sqlite3_bind_text(handle, index, start + offset, Int32(count), nil)
                if code != SQLITE_OK { bound = code }
                offset += count
            }
            let first = last - Int64(rows.count) + 1
            for (position, row) in rows.enumerated() {
                let base = Int32(position) * columnsPerRow
                sqlite3_bind_int64(handle, base + 1, first + Int64(position))
                text(base + 2, events[row].id.utf8.count)
                text(base + 3, events[row].source.utf8.count)
                text(base + 4, events[row].type.utf8.count)
                if let count = events[row].subject?.utf8.count { text(base + 5, count) } else { sqlite3_bind_null(handle, base + 5) }
                text(base + 6, events[row].time.utf8.count)
                sqlite3_bind_int64(handle, base + 7, events[row].receivedAtMicros)
                sqlite3_bind_int64(handle, base + 8, Int64(events[row].producer.uid))
                sqlite3_bind_int64(handle, base + 9, Int64(events[row].producer.gid))
                sqlite3_bind_int64(handle, base + 10, Int64(events[row].producer.pid))
                text(base + 11, events[row].json.count)
            }
            // A value SQLite refused would leave the last call's pointer bound.
            guard bound == SQLITE_OK else {
                sqlite3_clear_bindings(handle)
                return bound
            }
            // The bindings point into the arena: stepped while it is there,
            // and cleared before it goes.
            let code = sqlite3_step(handle)
            sqlite3_clear_bindings(handle)
            return code
        }
        guard code == SQLITE_DONE else { throw failure(db, handle, code, sql: sql) }
        sqlite3_reset(handle)
        let inserted = sqlite3_changes(connection)
        guard inserted == Int32(rows.count) else {
            let first = rows[rows.startIndex]
            throw DatabaseError(
                resultCode: .SQLITE_CONSTRAINT,
                message: "the outbox stored \(inserted) of \(rows.count) events (the first \(events[first].id) from \(events[first].source)) "
                    + "as seqs \(last - Int64(rows.count) + 1) to \(last): a seq was taken")
        }
    }

    /// Whether the row `seq` holds the key `(source, id)`, byte for byte.
    private static func isStored(seq: Int64, source: UnsafeRawBufferPointer, id: UnsafeRawBufferPointer, in db: Database) throws -> Bool {
        let sql = "SELECT source, id FROM outbox WHERE seq = ?"
        let handle = try db.cachedStatement(sql: sql).sqliteStatement
        sqlite3_reset(handle)
        defer { sqlite3_reset(handle) }
        sqlite3_bind_int64(handle, 1, seq)
        switch sqlite3_step(handle) {
        case SQLITE_DONE:
            return false
        case SQLITE_ROW:
            return same(handle, 0, source) && same(handle, 1, id)
        case let code:
            throw failure(db, handle, code, sql: sql)
        }
    }

    /// Whether column `column` of the current row has exactly `bytes`.
    private static func same(_ handle: OpaquePointer, _ column: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let stored = sqlite3_column_text(handle, column)
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count == bytes.count else { return false }
        guard count > 0, let stored, let base = bytes.baseAddress else { return true }
        return memcmp(stored, base, count) == 0
    }

    /// Whether the outbox holds a row `seq`.
    static func rowExists(_ seq: Int64, in db: Database) throws -> Bool {
        try Int64.fetchOne(db, sql: "SELECT seq FROM outbox WHERE seq = ?", arguments: [seq]) != nil
    }

    /// Reads every stored event's key into a new `OutboxKeys` (at startup: the
    /// table is kept in memory only). Byte for byte from SQLite's buffers, in
    /// `seq` order: the broker restarts in about 0.3 s with 1,000,000 events
    /// on the bench machine (0.1 s without this).
    static func loadKeys(_ db: Database, tag: @escaping OutboxKeys.TagFunction) throws -> OutboxKeys {
        var keys = OutboxKeys(tag: tag)
        let sql = "SELECT seq, source, id FROM outbox ORDER BY seq"
        let statement = try db.makeStatement(sql: sql)
        let handle = statement.sqliteStatement
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { break }
            guard code == SQLITE_ROW else { throw failure(db, handle, code, sql: sql) }
            func bytes(_ column: Int32) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(start: sqlite3_column_text(handle, column), count: Int(sqlite3_column_bytes(handle, column)))
            }
            let source = bytes(1)
            let id = bytes(2)
            keys.insert(tag: keys.tag(source: source, id: id), seq: sqlite3_column_int64(handle, 0))
        }
        sqlite3_reset(handle)
        return keys
    }

    /// The error of a failed step, with SQLite's message read before the
    /// statement is reset.
    private static func failure(_ db: Database, _ handle: OpaquePointer, _ code: Int32, sql: String) -> DatabaseError {
        let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
        sqlite3_reset(handle)
        return DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sql)
    }

    /// `Store.transaction(db, body)` for a transaction that may append to the
    /// outbox: the idempotency entries its appends added are taken back if it
    /// does not commit (but for rows that are stored after all).
    public func transaction(_ db: Database, _ body: () throws -> Void) throws {
        keys.withLock { $0.begin() }
        do {
            try Self.transaction(db, body)
        } catch {
            keys.withLock { keys in keys.rollback { seq in try Self.rowExists(seq, in: db) } }
            throw error
        }
        keys.withLock { $0.commit() }
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

    /// The highest `seq` handed out, as this store's writer knows it (its
    /// appends included, before they commit; 0 before the first event).
    var handedOut: Int64 { keys.withLock { $0.lastSeq } }

    /// The highest `seq` the outbox handed out, as the database has it: its
    /// last row, or `outbox_seq` if retention pruned that row (0 before the
    /// first event).
    static func highestSeq(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: """
            SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), coalesce((SELECT last FROM outbox_seq), 0))
            """) ?? 0
    }

    /// Appends `events` in one transaction of their own.
    public func append(_ events: [NewEvent]) throws(StoreError) -> [AppendOutcome] {
        do {
            return try pool.writeWithoutTransaction { db in
                var outcomes: [AppendOutcome] = []
                try transaction(db) { outcomes = try append(events, in: db) }
                return outcomes
            }
        } catch {
            throw StoreError.from(error, path: path)
        }
    }

    /// The highest `seq` of a committed event, pruned or not (0 on an empty outbox).
    public func lastSeq() throws -> Int64 {
        try pool.read { db in try Self.highestSeq(db) }
    }

    /// Events with `seq` in `range`, in `seq` order: at most `limit`, and no
    /// more once their JSON comes to `maxBytes` (the first is always read).
    ///
    /// Read through SQLite's C API: a subscriber behind the in-memory ring of
    /// recent events reads every event here, and GRDB's row decoding cost
    /// several times more than the read itself.
    public func events(in range: ClosedRange<Int64>, limit: Int = 1000, maxBytes: Int = .max) throws -> [StoredEvent] {
        try pool.read { db in
            let handle = try db.cachedStatement(sql: Self.selectEvents).sqliteStatement
            sqlite3_reset(handle)
            defer { sqlite3_reset(handle) }
            sqlite3_bind_int64(handle, 1, range.lowerBound)
            sqlite3_bind_int64(handle, 2, range.upperBound)
            sqlite3_bind_int64(handle, 3, Int64(limit))
            var events: [StoredEvent] = []
            events.reserveCapacity(min(limit, 256))
            var bytes = 0
            try Self.collect(db, handle, sql: Self.selectEvents, into: &events, bytes: &bytes, maxBytes: maxBytes)
            return events
        }
    }

    /// The events of `seqs` still in the outbox, in `seq` order, and no more
    /// once their JSON comes to `maxBytes` (the first found is always read):
    /// what a subscriber's retries and replays deliver next, in one read.
    public func events(seqs: [Int64], maxBytes: Int = .max) throws -> [StoredEvent] {
        if seqs.isEmpty { return [] }
        var events: [StoredEvent] = []
        var start = 0
        try pool.read { db in
            let handle = try db.cachedStatement(sql: Self.selectEventsBySeq).sqliteStatement
            var bytes = 0
            while start < seqs.count && bytes < maxBytes {
                let slice = seqs[start..<min(start + Self.seqsPerRead, seqs.count)]
                start += slice.count
                sqlite3_reset(handle)
                defer { sqlite3_reset(handle) }
                // Unused places repeat a seq of the slice (`IN` reads it once).
                for place in 0..<Self.seqsPerRead {
                    let seq = place < slice.count ? slice[slice.startIndex + place] : slice[slice.startIndex]
                    sqlite3_bind_int64(handle, Int32(place + 1), seq)
                }
                try Self.collect(db, handle, sql: Self.selectEventsBySeq, into: &events, bytes: &bytes, maxBytes: maxBytes)
            }
        }
        return events
    }

    /// Steps `handle` (a select of `StoredEvent`'s columns) to its end, or until
    /// the JSON read comes to `maxBytes`, adding each row to `events`.
    private static func collect(_ db: Database, _ handle: OpaquePointer, sql: String, into events: inout [StoredEvent],
                                bytes: inout Int, maxBytes: Int) throws {
        while bytes < maxBytes {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else { throw failure(db, handle, code, sql: sql) }
            events.append(StoredEvent(statement: handle))
            bytes += Int(sqlite3_column_bytes(handle, 10))
        }
    }

    /// Seqs bound in one statement of `events(seqs:)`.
    static let seqsPerRead = 64

    private static let selectEventsBySeq = """
        SELECT seq, id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event
        FROM outbox WHERE seq IN (\(Array(repeating: "?", count: seqsPerRead).joined(separator: ", "))) ORDER BY seq
        """

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
