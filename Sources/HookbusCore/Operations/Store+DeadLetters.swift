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

    /// Dead letters, oldest first, optionally of one subscriber, at most
    /// `limit`, and how many there are in all: read together, so the page and
    /// the total agree.
    public func deadLetters(subscriber: String? = nil, limit: Int = 1000) throws -> (letters: [DeadLetter], total: Int) {
        try pool.read { db in
            let filter = subscriber == nil ? "" : "WHERE subscriber = ?"
            var arguments: [any DatabaseValueConvertible] = []
            if let subscriber { arguments.append(subscriber) }
            let total = try Int.fetchOne(db, sql: "SELECT count(*) FROM dead_letters \(filter)",
                                         arguments: StatementArguments(arguments)) ?? 0
            arguments.append(limit)
            let letters = try Row.fetchAll(db, sql: "SELECT \(Self.deadLetterColumns) FROM dead_letters \(filter) ORDER BY id LIMIT ?",
                                           arguments: StatementArguments(arguments)).map(DeadLetter.init(row:))
            return (letters, total)
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
    ///   - known: the subscribers that exist now, when the caller knows them. A
    ///     dead letter of another one (removed from the config, an unnamed
    ///     subscription that has gone) could never be delivered: queued, it would
    ///     leave the dead letters for a retry row nothing runs. Named in `ids`,
    ///     it refuses the request; under "all" it is left where it is (`skipped`).
    /// - Returns: the dead letters queued, and those left.
    /// - Throws: `OperatorError` if an id does not exist or nothing is selected
    ///   (or nothing that can be delivered).
    public func retryDeadLetters(ids: [Int64]?, subscriber: String?, known: Set<String>? = nil,
                                 nowMicros: Int64 = Timestamp.nowMicros()) throws -> (queued: [DeadLetter], skipped: [DeadLetter]) {
        try pool.write { db in
            var chosen = try Self.selectDeadLetters(db, ids: ids, subscriber: subscriber)
            var skipped: [DeadLetter] = []
            if let known {
                skipped = chosen.filter { !known.contains($0.subscriber) }
                chosen.removeAll { !known.contains($0.subscriber) }
                if ids != nil, let letter = skipped.first {
                    throw OperatorError("unknown_subscriber", "dead letter \(letter.id) belongs to \(letter.subscriber), which no longer "
                        + "exists: it cannot be delivered again (dlq.purge removes it); nothing was changed")
                }
                if chosen.isEmpty {
                    let names = Set(skipped.map(\.subscriber)).sorted().joined(separator: ", ")
                    throw OperatorError("unknown_subscriber", "the \(skipped.count) dead letter(s) selected belong to subscribers that no "
                        + "longer exist (\(names)): they cannot be delivered again (dlq.purge removes them); nothing was changed")
                }
            }
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
            return (chosen, skipped)
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
                    throw OperatorError("unknown_dead_letter", "dead letter \(id) belongs to \(letter.subscriber), not \(EventValidator.clipped(subscriber)); nothing was changed")
                }
                chosen.append(letter)
            }
        } else {
            let filter = subscriber == nil ? "" : "WHERE subscriber = ?"
            chosen = try Row.fetchAll(db, sql: "SELECT \(deadLetterColumns) FROM dead_letters \(filter) ORDER BY id",
                                      arguments: subscriber.map { [$0] } ?? []).map(DeadLetter.init(row:))
            guard !chosen.isEmpty else {
                throw OperatorError("empty_selection", subscriber.map { "no dead letters for subscriber \(EventValidator.clipped($0))" } ?? "there are no dead letters")
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
