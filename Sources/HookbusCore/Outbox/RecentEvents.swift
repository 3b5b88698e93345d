import Synchronization

/// The events of the latest commits, kept in memory, so that dispatch reads a
/// new event once (from the committer) and not once per subscriber from the
/// outbox.
///
/// It covers a range of `seq`: every outbox row in `(coveredAfter, high]` is
/// in it. Each commit reports the range of `seq` it used (from
/// `sqlite_sequence`, so seqs used up by duplicates count); a commit that does
/// not start where the last one ended (something else wrote the outbox in
/// between) starts the coverage again. Bounded by a count and by bytes: the
/// oldest events go first, and a reader behind them reads the outbox.
public final class RecentEvents: Sendable {
    private struct State {
        var events: [StoredEvent] = []
        /// Index of the oldest event kept (the ones before it are dropped).
        var head = 0
        var bytes = 0
        /// Every outbox row with coveredAfter < seq <= high is kept.
        var coveredAfter: Int64 = -1
        var high: Int64 = -1
    }

    private let state = Mutex(State())
    public let capacity: Int
    public let maxBytes: Int

    public init(capacity: Int = 8192, maxBytes: Int = 16 << 20) {
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    /// A commit used the seqs `(before, through]` and stored `events` (in
    /// `seq` order) among them.
    public func committed(_ events: [StoredEvent], after before: Int64, through: Int64) {
        state.withLock { state in
            if before != state.high || state.high < 0 {
                state.events.removeAll(keepingCapacity: true)
                state.head = 0
                state.bytes = 0
                state.coveredAfter = before
            }
            state.high = through
            for event in events {
                state.events.append(event)
                state.bytes += event.json.utf8.count
            }
            while state.events.count - state.head > capacity || (state.bytes > maxBytes && state.head < state.events.count) {
                state.bytes -= state.events[state.head].json.utf8.count
                state.coveredAfter = state.events[state.head].seq
                state.head += 1
            }
            if state.head > 1024 && state.head * 2 > state.events.count {
                state.events.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    /// Up to `limit` events with `seq` above `seq`, in order; nil if the
    /// outbox must be read instead (`seq` is before what is kept, or nothing
    /// after it is kept).
    public func events(after seq: Int64, limit: Int) -> [StoredEvent]? {
        state.withLock { state -> [StoredEvent]? in
            guard seq >= state.coveredAfter, seq < state.high else { return nil }
            // The first kept event above `seq`.
            var low = state.head
            var high = state.events.count
            while low < high {
                let middle = (low + high) / 2
                if state.events[middle].seq <= seq { low = middle + 1 } else { high = middle }
            }
            guard low < state.events.count else { return nil }
            return Array(state.events[low..<min(low + limit, state.events.count)])
        }
    }

    /// Events kept right now.
    public var count: Int { state.withLock { $0.events.count - $0.head } }
}
