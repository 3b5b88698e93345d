import Dispatch
import GRDB
import Logging
import Synchronization

/// Group commit: every batch submitted while the previous transaction was
/// being written and fsynced goes into the next transaction together.
///
/// A lone batch on an idle broker is written at once (no timer); under load,
/// batches from all connections share one transaction and one fsync. The
/// writing happens on a dedicated serial queue, so async callers never block a
/// cooperative thread on disk I/O.
///
/// Bounded: each connection has at most `max_inflight_per_connection` batches
/// outstanding, and each subscriber runner one ledger write, so the queue holds
/// at most that many submissions.
public final class Committer: Sendable {
    public typealias Outcome = Result<[AppendOutcome], WireError>

    private struct Submission {
        var events: [NewEvent]
        var ops: [LedgerOp] = []
        /// Called once, on the writer queue (or the caller's thread, for a
        /// batch written inline), when the group is committed or refused.
        var completion: @Sendable (Outcome) -> Void
    }

    private struct State {
        var pending: [Submission] = []
        var writing = false
        var closed = false
    }

    public let store: Store
    /// The events of the latest commits, for dispatch.
    public let recent = RecentEvents()
    private let logger: Logger
    private let queue = DispatchQueue(label: "hookbus.committer")
    private let state = Mutex(State())
    /// Called on the writer queue after every successful commit with the highest
    /// `seq` stored so far; dispatch uses it to wake up.
    private let onCommit: @Sendable (Int64) -> Void
    /// Called before each transaction that stores events; a non-nil answer
    /// refuses every batch of events in the group with it (the outbox size
    /// limit and a damaged database use it).
    private let admission: @Sendable (Database) throws -> WireError?

    public init(
        store: Store, logger: Logger,
        admission: @escaping @Sendable (Database) throws -> WireError? = { _ in nil },
        onCommit: @escaping @Sendable (Int64) -> Void = { _ in }
    ) {
        self.store = store
        self.logger = logger
        self.admission = admission
        self.onCommit = onCommit
    }

    /// Stores `events` and returns one outcome per event, in order, once they
    /// are committed with the configured durability. Storage failures come back
    /// as `unavailable` and nothing of the batch is stored.
    public func commit(_ events: [NewEvent]) async -> Outcome {
        if events.isEmpty { return .success([]) }
        return await submit(events: events, ops: [])
    }

    /// Writes delivery-state changes in the next group transaction, beside the
    /// events, and returns once they are committed.
    public func record(_ ops: [LedgerOp]) async -> Result<Void, WireError> {
        if ops.isEmpty { return .success(()) }
        return await submit(events: [], ops: ops).map { _ in () }
    }

    private func submit(events: [NewEvent], ops: [LedgerOp]) async -> Outcome {
        await withCheckedContinuation { continuation in
            submit(events: events, ops: ops) { continuation.resume(returning: $0) }
        }
    }

    /// Stores `events` (and writes `ops`) in the next group transaction and calls
    /// `completion` on the writer queue (or, written inline, on the calling
    /// thread before `submit` returns) once they are committed, or refused.
    /// `completion` must return quickly (hand the outcome to another thread):
    /// the next transaction waits for it.
    ///
    /// Completions are called in submission order, so a caller that submits
    /// batch after batch gets its outcomes in the same order.
    ///
    /// With `mayWriteInline` (an event loop's fast path), a small submission
    /// that finds the writer idle is written on the calling thread, and
    /// `completion` is called there before `submit` returns: two thread
    /// wake-ups fewer (the writer queue's, and the caller's for the answer),
    /// which is most of what a lone producer waits for beyond the commit.
    /// Whatever comes meanwhile waits for the writer queue, which takes it
    /// once this write is done. The event loop does not read its other
    /// connections during that write; their lines would have waited for it
    /// anyway, in the next group. (Until the tenth session only a caller
    /// "alone" in publishing was written inline; letting every idle-writer
    /// submission in cut publish → hook p99 at 20k/s by up to 14 % and its
    /// p999 by half, and left 4 × 64 alone: bench README.)
    public func submit(
        events: [NewEvent], ops: [LedgerOp] = [], mayWriteInline: Bool = false,
        completion: @escaping @Sendable (Outcome) -> Void
    ) {
        if events.isEmpty && ops.isEmpty { return completion(.success([])) }
        let submission = Submission(events: events, ops: ops, completion: completion)
        let start = state.withLock { state -> Start? in
            if state.closed { return nil }
            if mayWriteInline && !state.writing && state.pending.isEmpty && !events.isEmpty
                && events.count <= Self.inlineLimit {
                // This batch alone, here: whatever comes meanwhile waits for the queue.
                state.writing = true
                return .inline
            }
            state.pending.append(submission)
            if state.writing { return .queued }
            state.writing = true
            return .queue
        }
        switch start {
        case nil:
            completion(.failure(WireError(.shuttingDown, "shutting_down", "the broker is shutting down; nothing was stored")))
        case .inline?:
            write([submission])
            if store.checkpointFinishDue {
                // Not on the caller's thread (its acknowledgement may not be out
                // yet), and with the writer role kept until it is done, so no
                // other event loop's inline write waits behind it.
                queue.async {
                    self.store.finishCheckpointIfDue()
                    self.handOff()
                }
            } else {
                handOff()
            }
        case .queue?:
            queue.async { self.drain() }
        case .queued?:
            break
        }
    }

    private enum Start { case inline, queue, queued }

    /// Submissions of at most this many events may be written on the caller's thread.
    static let inlineLimit = 8

    /// After a write on a caller's thread: the writer queue takes what came
    /// meanwhile, or the writer role is given up if nothing did.
    private func handOff() {
        let more = state.withLock { state -> Bool in
            if state.pending.isEmpty { state.writing = false }
            return state.writing
        }
        if more { queue.async { self.drain() } }
    }

    /// Takes everything pending, or gives up the writer role if nothing is.
    private func take() -> [Submission]? {
        state.withLock { state -> [Submission]? in
            if state.pending.isEmpty {
                state.writing = false
                return nil
            }
            let taken = state.pending
            state.pending.removeAll(keepingCapacity: true)
            return taken
        }
    }

    /// Refuses new batches, waits for the ones already submitted to be committed.
    public func close() async {
        state.withLock { $0.closed = true }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async { continuation.resume() }
        }
        // A drain may have been scheduled after the barrier above, or a write be
        // under way on a caller's thread: wait for those too.
        while state.withLock({ $0.writing }) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                queue.async { continuation.resume() }
            }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    private func drain() {
        while let group = take() {
            write(group)
            // Between transactions, once the group's completions are out.
            store.finishCheckpointIfDue()
        }
    }

    private func write(_ group: [Submission]) {
        var lastSeq: Int64 = 0
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(group.count)
        /// The seqs this transaction used: `(before, through]`.
        var used: (before: Int64, through: Int64)?
        do {
            try store.pool.writeWithoutTransaction { db in try store.transaction(db) {
                outcomes.removeAll(keepingCapacity: true)
                lastSeq = 0
                used = nil
                let hasEvents = group.contains { !$0.events.isEmpty }
                let refusal = hasEvents ? try admission(db) : nil
                let before = hasEvents && refusal == nil ? store.handedOut : nil
                let now = Timestamp.nowMicros()
                for submission in group {
                    if !submission.ops.isEmpty {
                        try Store.apply(submission.ops, in: db, nowMicros: now)
                        outcomes.append(.success([]))
                    } else if let refusal {
                        outcomes.append(.failure(refusal))
                    } else {
                        let stored = try store.append(submission.events, in: db)
                        for case .stored(let seq, _) in stored { lastSeq = max(lastSeq, seq) }
                        outcomes.append(.success(stored))
                    }
                }
                if let before { used = (before, store.handedOut) }
            } }
        } catch {
            let failure = StoreError.from(error, path: store.path)
            logger.error("commit failed; answering unavailable", metadata: [
                "hookbus.error": "\(failure.message)", "hookbus.events": "\(group.reduce(0) { $0 + $1.events.count })",
            ])
            let refusal = WireError(.unavailable, "storage_failed", "the event was not stored: \(failure.message); retry later")
            for submission in group { submission.completion(.failure(refusal)) }
            return
        }
        if let used {
            IngestLoad.committed(Int(used.through - used.before))
        }
        if let used, recent.isRead {
            var submissions: [(events: [NewEvent], outcomes: [AppendOutcome])] = []
            for (submission, outcome) in zip(group, outcomes) {
                guard case .success(let stored) = outcome, !submission.events.isEmpty else { continue }
                submissions.append((submission.events, stored))
            }
            recent.committed(submissions, after: used.before, through: used.through)
        }
        if lastSeq > 0 { onCommit(lastSeq) }
        for (submission, outcome) in zip(group, outcomes) {
            submission.completion(outcome)
        }
    }
}
