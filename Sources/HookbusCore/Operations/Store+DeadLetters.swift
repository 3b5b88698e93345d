import GRDB

/// A dead letter as operators see it.
public struct DeadLetter: Sendable, Equatable {
    public var id: Int64
    public var subscriber: String
    public var seq: Int64
    public var eventID: String
    public var eventType: String
    public var attempts: Int
    public var reason: String
    public var lastError: String
    public var firstFailedAt: Int64
    public var lastFailedAt: Int64
    public var replay: Bool
    /// The event JSON and every attempt's error (JSON array), for `dlq show`.
    public var event: String
    public var errors: String
}

extension Store {
    static let deadLetterColumns = """
        id, subscriber, seq, event_id, event_type, attempts, reason, last_error, first_failed_at, last_failed_at,
        replay, event, errors
        """

    /// Dead letters, oldest first, optionally of one subscriber.
    public func deadLetters(subscriber: String? = nil, limit: Int = 1000) throws -> [DeadLetter] {
        try pool.read { db in
            let filter = subscriber == nil ? "" : "WHERE subscriber = ?"
            var arguments: [any DatabaseValueConvertible] = []
            if let subscriber { arguments.append(subscriber) }
            arguments.append(limit)
            return try Row.fetchAll(db, sql: "SELECT \(Self.deadLetterColumns) FROM dead_letters \(filter) ORDER BY id LIMIT ?",
                                    arguments: StatementArguments(arguments)).map(DeadLetter.init(row:))
        }
    }

    public func deadLetter(id: Int64) throws -> DeadLetter? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.deadLetterColumns) FROM dead_letters WHERE id = ?", arguments: [id])
                .map(DeadLetter.init(row:))
        }
    }

    /// Queues the chosen dead letters for delivery again (as replays, due now)
    /// and removes them from the dead letters, in one transaction.
    /// - Parameters:
    ///   - ids: the dead letters to retry; nil means all (of `subscriber`, if given).
    /// - Returns: the dead letters queued.
    /// - Throws: `OperatorError` if an id does not exist or nothing is selected.
    public func retryDeadLetters(ids: [Int64]?, subscriber: String?, nowMicros: Int64 = Timestamp.nowMicros()) throws -> [DeadLetter] {
        try pool.write { db in
            let chosen = try Self.selectDeadLetters(db, ids: ids, subscriber: subscriber)
            for letter in chosen {
                // The attempts start again; their history goes with them, so a
                // delivery that dies again keeps every error.
                try db.execute(sql: """
                    INSERT INTO retries (subscriber, seq, attempt, next_attempt_at, last_error, errors, first_failed_at, replay)
                    VALUES (?, ?, 0, ?, ?, ?, ?, 1)
                    ON CONFLICT (subscriber, seq) DO UPDATE SET next_attempt_at = excluded.next_attempt_at, replay = 1
                    """, arguments: [letter.subscriber, letter.seq, nowMicros, letter.lastError, letter.errors, letter.firstFailedAt])
                try db.execute(sql: "DELETE FROM dead_letters WHERE id = ?", arguments: [letter.id])
            }
            return chosen
        }
    }

    /// Deletes the chosen dead letters for good.
    /// - Returns: the dead letters removed.
    public func purgeDeadLetters(ids: [Int64]?, subscriber: String?) throws -> [DeadLetter] {
        try pool.write { db in
            let chosen = try Self.selectDeadLetters(db, ids: ids, subscriber: subscriber)
            for letter in chosen {
                try db.execute(sql: "DELETE FROM dead_letters WHERE id = ?", arguments: [letter.id])
            }
            return chosen
        }
    }

    private static func selectDeadLetters(_ db: Database, ids: [Int64]?, subscriber: String?) throws -> [DeadLetter] {
        var chosen: [DeadLetter] = []
        if let ids {
            guard !ids.isEmpty else { throw OperatorError("empty_selection", "give dead letter ids, or all") }
            for id in ids {
                guard let row = try Row.fetchOne(db, sql: "SELECT \(deadLetterColumns) FROM dead_letters WHERE id = ?", arguments: [id]) else {
                    throw OperatorError("unknown_dead_letter", "no dead letter with id \(id); nothing was changed")
                }
                let letter = DeadLetter(row: row)
                if let subscriber, letter.subscriber != subscriber {
                    throw OperatorError("unknown_dead_letter", "dead letter \(id) belongs to \(letter.subscriber), not \(subscriber); nothing was changed")
                }
                chosen.append(letter)
            }
        } else {
            let filter = subscriber == nil ? "" : "WHERE subscriber = ?"
            chosen = try Row.fetchAll(db, sql: "SELECT \(deadLetterColumns) FROM dead_letters \(filter) ORDER BY id",
                                      arguments: subscriber.map { [$0] } ?? []).map(DeadLetter.init(row:))
            guard !chosen.isEmpty else {
                throw OperatorError("empty_selection", subscriber.map { "no dead letters for subscriber \($0)" } ?? "there are no dead letters")
            }
        }
        return chosen
    }
}

extension DeadLetter {
    init(row: Row) {
        id = row["id"]
        subscriber = row["subscriber"]
        seq = row["seq"]
        eventID = row["event_id"]
        eventType = row["event_type"]
        attempts = row["attempts"]
        reason = row["reason"]
        lastError = row["last_error"]
        firstFailedAt = row["first_failed_at"]
        lastFailedAt = row["last_failed_at"]
        replay = (row["replay"] as Int64) != 0
        event = row["event"]
        errors = row["errors"]
    }
}
