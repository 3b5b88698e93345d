import GRDB

/// A scheduled re-attempt, as stored in `retries`.
public struct RetryRow: Sendable, Equatable {
    public var seq: Int64
    public var attempt: Int
    public var nextAttemptAt: Int64
    public var lastError: String?
    public var replay: Bool

    public init(seq: Int64, attempt: Int, nextAttemptAt: Int64, lastError: String?, replay: Bool) {
        self.seq = seq
        self.attempt = attempt
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.replay = replay
    }

    /// A row of `retries` read with `Store.retryColumns`.
    init(row: Row) {
        self.init(seq: row["seq"], attempt: row["attempt"], nextAttemptAt: row["next_attempt_at"],
                  lastError: row["last_error"], replay: (row["replay"] as Int64) != 0)
    }
}

extension Store {
    /// Applies delivery-state changes inside the caller's transaction, in order.
    public static func apply(_ ops: [LedgerOp], in db: Database, nowMicros: Int64) throws {
        // A cursor only moves forward (max), independently of the other tables:
        // one write per subscriber, with its highest seq, does what all of them do.
        var cursors: [String: Int64] = [:]
        var cursorOrder: [String] = []
        for op in ops {
            switch op {
            case .advanceCursor(let subscriber, let seq):
                if let known = cursors[subscriber] {
                    cursors[subscriber] = max(known, seq)
                } else {
                    cursors[subscriber] = seq
                    cursorOrder.append(subscriber)
                }
            case .scheduleRetry(let subscriber, let seq, let attempt, let next, let error, let replay):
                let entry = Self.errorEntry(attempt: attempt, error: error, at: nowMicros)
                try db.execute(sql: """
                    INSERT INTO retries (subscriber, seq, attempt, next_attempt_at, last_error, errors, first_failed_at, replay)
                    VALUES (?, ?, ?, ?, ?, json_array(json(?)), ?, ?)
                    ON CONFLICT (subscriber, seq) DO UPDATE SET
                        attempt = excluded.attempt, next_attempt_at = excluded.next_attempt_at,
                        last_error = excluded.last_error,
                        errors = json_insert(errors, '$[#]', json(?)),
                        first_failed_at = coalesce(first_failed_at, excluded.first_failed_at)
                    """, arguments: [subscriber, seq, attempt, next, error, entry, nowMicros, replay, entry])
            case .clearRetry(let subscriber, let seq, let keepReplay, let startedFrom):
                try db.cachedStatement(sql: """
                    DELETE FROM retries WHERE subscriber = ? AND seq = ? AND (? = 0 OR replay = 0)
                    AND (? IS NULL OR next_attempt_at = ?)
                    """).execute(arguments: [subscriber, seq, keepReplay, startedFrom, startedFrom])
            case .deadLetter(let subscriber, let seq, let attempts, let error, let reason, let replay, let startedFrom):
                let entry = Self.errorEntry(attempt: attempts, error: error, at: nowMicros)
                try db.execute(sql: """
                    INSERT INTO dead_letters (subscriber, seq, event_id, event_type, event, attempts, errors, last_error,
                                              reason, first_failed_at, last_failed_at, replay)
                    SELECT ?, o.seq, o.id, o.type, o.event, ?,
                           json_insert(coalesce(r.errors, '[]'), '$[#]', json(?)), ?, ?,
                           coalesce(r.first_failed_at, ?), ?, ?
                    FROM outbox o LEFT JOIN retries r ON r.subscriber = ? AND r.seq = o.seq
                    WHERE o.seq = ?
                    """, arguments: [subscriber, attempts, entry, error, reason.rawValue, nowMicros, nowMicros, replay,
                                     subscriber, seq])
                try db.cachedStatement(sql: """
                    DELETE FROM retries WHERE subscriber = ? AND seq = ? AND (? IS NULL OR next_attempt_at = ?)
                    """).execute(arguments: [subscriber, seq, startedFrom, startedFrom])
            }
        }
        if !cursorOrder.isEmpty {
            let advance = try db.cachedStatement(sql: """
                INSERT INTO subscriber_cursors (subscriber, cursor, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (subscriber) DO UPDATE SET cursor = max(cursor, excluded.cursor), updated_at = excluded.updated_at
                """)
            for subscriber in cursorOrder {
                try advance.execute(arguments: [subscriber, cursors[subscriber]!, nowMicros])
            }
        }
    }

    static func errorEntry(attempt: Int, error: String, at micros: Int64) -> String {
        var out = JSONWriter()
        out.beginObject()
        out.key("attempt"); out.int(attempt)
        out.key("at"); out.string(Timestamp.format(micros: micros))
        out.key("error"); out.string(error)
        out.endObject()
        return String(decoding: out.bytes, as: UTF8.self)
    }

    /// The subscriber's cursor, creating it at `initial` if the subscriber is new.
    public func cursor(for subscriber: String, initial: Int64) throws -> Int64 {
        try pool.write { db in
            if let cursor = try Int64.fetchOne(db, sql: "SELECT cursor FROM subscriber_cursors WHERE subscriber = ?",
                                               arguments: [subscriber]) {
                return cursor
            }
            try db.execute(sql: "INSERT INTO subscriber_cursors (subscriber, cursor, updated_at) VALUES (?, ?, ?)",
                           arguments: [subscriber, initial, Timestamp.nowMicros()])
            return initial
        }
    }

    /// The retry rows of `subscriber` for `seqs` that are stored.
    public func retries(for subscriber: String, seqs: [Int64]) throws -> [RetryRow] {
        if seqs.isEmpty { return [] }
        return try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(Self.retryColumns) FROM retries
                WHERE subscriber = ? AND seq IN (SELECT value FROM json_each(?)) ORDER BY seq
                """, arguments: [subscriber, "[" + seqs.map(String.init).joined(separator: ",") + "]"]).map(RetryRow.init(row:))
        }
    }

    /// Scheduled re-attempts of `subscriber`, earliest first.
    public func retries(for subscriber: String, limit: Int = 10_000) throws -> [RetryRow] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(Self.retryColumns) FROM retries
                WHERE subscriber = ? ORDER BY next_attempt_at, seq LIMIT ?
                """, arguments: [subscriber, limit]).map(RetryRow.init(row:))
        }
    }

    /// The columns `RetryRow(row:)` reads.
    private static let retryColumns = "seq, attempt, next_attempt_at, last_error, replay"

    /// Events after `seq`, in order, at most `limit` and about `maxBytes` of
    /// JSON (at least one event): the subscriber filters them.
    public func events(after seq: Int64, limit: Int, maxBytes: Int = .max) throws -> [StoredEvent] {
        try events(in: (seq + 1)...Int64.max, limit: limit, maxBytes: maxBytes)
    }

    /// One stored event, if it is still in the outbox.
    public func event(seq: Int64) throws -> StoredEvent? {
        try events(in: seq...seq, limit: 1).first
    }
}

extension Store {
    /// Dead letters held for `subscriber`.
    public func deadLetterCount(for subscriber: String) throws -> Int {
        try pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM dead_letters WHERE subscriber = ?", arguments: [subscriber]) ?? 0
        }
    }
}

extension Store {
    /// Seqs above `cursor` already dead-lettered for `subscriber` (settled by
    /// a run that crashed before its cursor caught up).
    public func deadLetteredSeqs(for subscriber: String, above cursor: Int64) throws -> Set<Int64> {
        try pool.read { db in
            Set(try Int64.fetchAll(db, sql: "SELECT seq FROM dead_letters WHERE subscriber = ? AND seq > ?",
                                   arguments: [subscriber, cursor]))
        }
    }
}
