/// One event handed to one subscriber, for one attempt.
public struct Delivery: Sendable {
    public var subscriber: String
    public var event: StoredEvent
    /// 1 for the first try.
    public var attempt: Int
    /// True when an operator replayed or retried it from the dead letters.
    public var replay: Bool

    public init(subscriber: String, event: StoredEvent, attempt: Int, replay: Bool) {
        self.subscriber = subscriber
        self.event = event
        self.attempt = attempt
        self.replay = replay
    }

    public var seq: Int64 { event.seq }
}

/// How one attempt ended.
public enum AttemptResult: Sendable, Equatable {
    case delivered
    /// Try again later (error, timeout, crash, exit 75 ...), until attempts run out.
    case failed(String)
    /// The subscriber went away mid-delivery (a socket subscriber disconnected):
    /// it counts as an attempt, and is due again at once, so a subscriber that
    /// comes back gets its unacknowledged deliveries first, in seq order.
    case interrupted(String)
    /// The subscriber refused the event for good (exit 65, `"retry":false`): dead-letter it now.
    case rejected(String)
}

/// A change to the delivery state, written in the same group transactions as
/// the events (see `Committer.record`).
public enum LedgerOp: Sendable, Equatable {
    /// Every matching seq up to `seq` is settled for `subscriber`.
    case advanceCursor(subscriber: String, seq: Int64)
    /// Attempt `attempt` failed with `error`; try again at `nextAttemptAt` (µs).
    case scheduleRetry(subscriber: String, seq: Int64, attempt: Int, nextAttemptAt: Int64, error: String, replay: Bool)
    /// A delivery that was retrying (or replayed) has been delivered. With
    /// `keepReplay`, a row that became a replay meanwhile (an operator replayed
    /// the event while this attempt ran) stays, so the replay still happens.
    /// With `startedFrom` (the `next_attempt_at` of the row the attempt
    /// started from), a row that no longer has it stays: a replay or a
    /// dead-letter retry written meanwhile sets it to its own time.
    case clearRetry(subscriber: String, seq: Int64, keepReplay: Bool = false, startedFrom: Int64? = nil)
    /// Give up: move the delivery to the dead letters with a copy of the event.
    /// Its retry row goes too, unless `startedFrom` is given and the row no
    /// longer has it (`clearRetry`); `Int64.min` for an attempt that started
    /// from no row (a first attempt): a row written meanwhile stays.
    case deadLetter(subscriber: String, seq: Int64, attempts: Int, error: String, reason: DeadLetterReason, replay: Bool,
                    startedFrom: Int64? = nil)
}

public enum DeadLetterReason: String, Sendable, Equatable {
    case maxAttempts = "max_attempts"
    case rejected
}
