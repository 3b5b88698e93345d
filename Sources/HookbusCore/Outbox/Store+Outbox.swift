import GRDB

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
    static let insertSQL = """
        INSERT INTO outbox (id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (source, id) DO NOTHING
        """

    /// Appends `events` inside the caller's transaction, in order. An event whose
    /// `(source, id)` is already stored (before or earlier in the same batch) is
    /// answered with the stored `seq` and writes nothing.
    public static func append(_ events: [NewEvent], in db: Database) throws -> [AppendOutcome] {
        let insert = try db.cachedStatement(sql: insertSQL)
        var outcomes: [AppendOutcome] = []
        outcomes.reserveCapacity(events.count)
        for event in events {
            try insert.execute(arguments: [
                event.id, event.source, event.type, event.subject, event.time, event.receivedAtMicros,
                Int64(event.producer.uid), Int64(event.producer.gid), Int64(event.producer.pid),
                String(decoding: event.json, as: UTF8.self),
            ])
            if db.changesCount == 1 {
                outcomes.append(.stored(seq: db.lastInsertedRowID, id: event.id))
            } else {
                let seq = try Int64.fetchOne(
                    db.cachedStatement(sql: "SELECT seq FROM outbox WHERE source = ? AND id = ?"),
                    arguments: [event.source, event.id]) ?? 0
                outcomes.append(.duplicate(seq: seq, id: event.id))
            }
        }
        return outcomes
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
    public func events(in range: ClosedRange<Int64>, limit: Int = 1000) throws -> [StoredEvent] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT seq, id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event
                FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?
                """, arguments: [range.lowerBound, range.upperBound, limit]).map(StoredEvent.init(row:))
        }
    }

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
    init(row: Row) {
        seq = row["seq"]
        id = row["id"]
        source = row["source"]
        type = row["type"]
        subject = row["subject"]
        time = row["time"]
        receivedAtMicros = row["received_at"]
        producer = Producer(uid: UInt32(row["producer_uid"] as Int64), gid: UInt32(row["producer_gid"] as Int64),
                            pid: Int32(row["producer_pid"] as Int64))
        json = row["event"]
    }
}
