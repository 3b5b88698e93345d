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
/// Bounded: each connection has at most one batch outstanding, so the queue
/// holds at most `max_connections` batches.
public final class Committer: Sendable {
    public typealias Outcome = Result<[AppendOutcome], WireError>

    private struct Submission {
        var events: [NewEvent]
        var ops: [LedgerOp] = []
        var continuation: CheckedContinuation<Outcome, Never>
    }

    private struct State {
        var pending: [Submission] = []
        var writing = false
        var closed = false
    }

    public let store: Store
    private let logger: Logger
    private let queue = DispatchQueue(label: "hookbus.committer")
    private let state = Mutex(State())
    /// Called on the writer queue after every successful commit with the highest
    /// `seq` stored so far; dispatch uses it to wake up.
    private let onCommit: @Sendable (Int64) -> Void
    /// Called before each transaction; a non-nil answer refuses the whole group
    /// with `unavailable` (the outbox size limit uses it).
    private let admission: @Sendable (Database) throws -> String?

    public init(
        store: Store, logger: Logger,
        admission: @escaping @Sendable (Database) throws -> String? = { _ in nil },
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
            let start = state.withLock { state -> Bool? in
                if state.closed { return nil }
                state.pending.append(Submission(events: events, ops: ops, continuation: continuation))
                if state.writing { return false }
                state.writing = true
                return true
            }
            switch start {
            case nil:
                continuation.resume(returning: .failure(
                    WireError(.shuttingDown, "shutting_down", "the broker is shutting down; nothing was stored")))
            case true?:
                queue.async { self.drain() }
            case false?:
                break
            }
        }
    }

    /// Refuses new batches, waits for the ones already submitted to be committed.
    public func close() async {
        state.withLock { $0.closed = true }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async { continuation.resume() }
        }
        // A drain may have been scheduled after the barrier above: wait for it too.
        while state.withLock({ $0.writing }) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                queue.async { continuation.resume() }
            }
        }
    }

    private func drain() {
        while true {
            let group = state.withLock { state -> [Submission] in
                let taken = state.pending
                state.pending.removeAll(keepingCapacity: true)
                if taken.isEmpty { state.writing = false }
                return taken
            }
            if group.isEmpty { return }
            write(group)
        }
    }

    private func write(_ group: [Submission]) {
        var lastSeq: Int64 = 0
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(group.count)
        do {
            try store.pool.write { db in
                outcomes.removeAll(keepingCapacity: true)
                lastSeq = 0
                let hasEvents = group.contains { !$0.events.isEmpty }
                let refusal = hasEvents ? try admission(db) : nil
                let now = Timestamp.nowMicros()
                for submission in group {
                    if !submission.ops.isEmpty {
                        try Store.apply(submission.ops, in: db, nowMicros: now)
                        outcomes.append(.success([]))
                    } else if let refusal {
                        outcomes.append(.failure(WireError(.unavailable, "outbox_full", refusal)))
                    } else {
                        let stored = try Store.append(submission.events, in: db)
                        for case .stored(let seq, _) in stored { lastSeq = max(lastSeq, seq) }
                        outcomes.append(.success(stored))
                    }
                }
            }
        } catch {
            let failure = StoreError.from(error, path: store.path)
            logger.error("commit failed; answering unavailable", metadata: [
                "hookbus.error": "\(failure.message)", "hookbus.events": "\(group.reduce(0) { $0 + $1.events.count })",
            ])
            let refusal = WireError(.unavailable, "storage_failed", "the event was not stored: \(failure.message); retry later")
            for submission in group { submission.continuation.resume(returning: .failure(refusal)) }
            return
        }
        if lastSeq > 0 { onCommit(lastSeq) }
        for (submission, outcome) in zip(group, outcomes) {
            submission.continuation.resume(returning: outcome)
        }
    }
}
