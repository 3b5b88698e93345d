import Synchronization

/// The events of the latest commits, kept in memory, so that dispatch reads a
/// new event once (from the committer) and not once per subscriber from the
/// outbox.
///
/// It covers a range of `seq`: every outbox row in `(coveredAfter, high]` is
/// in it. Each commit reports the range of `seq` it used (every `seq` the
/// store handed out in it); a commit that does
/// not start where the last one ended (something else wrote the outbox in
/// between) starts the coverage again. Bounded by a count and by bytes (each
/// event's JSON plus `overhead`): the oldest go first, and a reader behind
/// them reads the outbox. Retention does not look here: a row it prunes may
/// still be kept (it was delivered to every subscriber that existed).
///
/// Kept only while someone may read it (`addReader`): with no subscriber
/// running, the committer does not hand commits over (at 4 × 64 with no
/// subscriber the ring was 7 % of the committer's time, most of it freeing the
/// events it dropped), and the last reader to leave empties the ring, on its
/// own thread. The first commit handed over after that starts the coverage
/// again; a reader behind it reads the outbox.
///
/// What the committer drops from the ring is freed by the next reader, on its
/// own thread: freeing thousands of events a second on the committer's thread
/// was 5 % of the ingest rate with 10 hooks reading. Only when the readers
/// leave more than a quarter of `capacity` events (or of `maxBytes`) waiting
/// does the committer free the oldest itself, a few with each commit.
///
/// The committer's thread is the broker's bottleneck, so it hands over each
/// submission's events and outcomes as they are, without building stored
/// events (the readers do); a submission with duplicates is trimmed to what
/// it stored.
public final class RecentEvents: Sendable {
    /// One submission of a commit: its events, their outcomes, and the range
    /// of the seqs it stored.
    private struct Chunk: Sendable {
        var events: [NewEvent]
        var outcomes: [AppendOutcome]
        var last: Int64
        var stored: Int
        var bytes: Int
    }

    private struct State {
        var chunks: [Chunk] = []
        /// Index of the oldest chunk kept (the ones before it are dropped).
        var head = 0
        var stored = 0
        var bytes = 0
        /// Every outbox row with coveredAfter < seq <= high is kept.
        var coveredAfter: Int64 = -1
        var high: Int64 = -1
        /// Dropped chunks not freed yet: a reader frees them (`events(after:)`),
        /// on its thread, so the committer does not; past a quarter of
        /// `capacity` or of `maxBytes` the committer frees the oldest itself
        /// (a stalled subscriber reads nothing).
        var dropped: [Chunk] = []
        var droppedHead = 0
        var droppedEvents = 0
        var droppedBytes = 0
    }

    private let state = Mutex(State())
    private let readers = Atomic<Int>(0)
    public let capacity: Int
    public let maxBytes: Int

    /// Bytes counted per event besides its JSON: its attribute strings and
    /// the bookkeeping around them.
    static let overhead = 256

    public init(capacity: Int = 8192, maxBytes: Int = 16 << 20) {
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    /// Someone reads the ring from now on (a subscriber runner, while it runs):
    /// the committer hands its commits over. Balance with `removeReader`.
    public func addReader() { readers.add(1, ordering: .sequentiallyConsistent) }

    /// The last reader to leave empties the ring, freeing it on its own thread:
    /// kept, it would stay in memory for as long as nobody reads, and the
    /// first commit handed over afterwards would drop it all on the committer's.
    public func removeReader() {
        guard readers.subtract(1, ordering: .sequentiallyConsistent).newValue == 0 else { return }
        let emptied = state.withLock { state -> (kept: [Chunk], dropped: [Chunk]) in
            var kept: [Chunk] = [], dropped: [Chunk] = []
            swap(&kept, &state.chunks)
            swap(&dropped, &state.dropped)
            state = State()
            return (kept, dropped)
        }
        // Freed as they go out of scope, here.
        _ = emptied
    }

    /// Whether anyone may read the ring: if not, commits need not be handed over.
    public var isRead: Bool { readers.load(ordering: .sequentiallyConsistent) > 0 }

    /// A commit used the seqs `(before, through]` and stored these
    /// submissions' events (in `seq` order) among them.
    public func committed(_ submissions: [(events: [NewEvent], outcomes: [AppendOutcome])], after before: Int64, through: Int64) {
        var chunks: [Chunk] = []
        for (events, outcomes) in submissions {
            var last: Int64 = 0, stored = 0, bytes = 0
            for (event, outcome) in zip(events, outcomes) {
                guard case .stored(let seq, _) = outcome else { continue }
                last = max(last, seq)
                stored += 1
                bytes += event.json.count + Self.overhead
            }
            guard stored > 0 else { continue }
            if stored == events.count {
                chunks.append(Chunk(events: events, outcomes: outcomes, last: last, stored: stored, bytes: bytes))
            } else {
                // Duplicates are not kept: only what this commit stored.
                let kept = zip(events, outcomes).filter { if case .stored = $0.1 { true } else { false } }
                chunks.append(Chunk(events: kept.map(\.0), outcomes: kept.map(\.1), last: last, stored: stored, bytes: bytes))
            }
        }
        // Dropped chunks wait for a reader to free them. Past a quarter of
        // `capacity` waiting events the oldest are freed here, after the lock, a few with
        // each commit: kept until an array is compacted, they were all freed
        // at once (thousands of events, milliseconds on the committer's thread).
        var freed: [Chunk] = []
        state.withLock { state in
            func drop(_ chunk: Chunk) {
                state.dropped.append(chunk)
                state.droppedEvents += chunk.events.count
                state.droppedBytes += chunk.bytes
            }
            if before != state.high || state.high < 0 {
                for chunk in state.chunks[state.head...] { drop(chunk) }
                state.chunks.removeAll(keepingCapacity: true)
                state.head = 0
                state.stored = 0
                state.bytes = 0
                state.coveredAfter = before
            }
            state.high = through
            for chunk in chunks {
                state.chunks.append(chunk)
                state.stored += chunk.stored
                state.bytes += chunk.bytes
            }
            while state.head < state.chunks.count && (state.stored > capacity || state.bytes > maxBytes) {
                let oldest = state.chunks[state.head]
                state.stored -= oldest.stored
                state.bytes -= oldest.bytes
                state.coveredAfter = oldest.last
                // An empty chunk stays in its place until the array is compacted.
                state.chunks[state.head] = Chunk(events: [], outcomes: [], last: oldest.last, stored: 0, bytes: 0)
                drop(oldest)
                state.head += 1
            }
            if state.head > 64 && state.head * 2 > state.chunks.count {
                state.chunks.removeFirst(state.head)
                state.head = 0
            }
            while (state.droppedEvents > capacity / 4 || state.droppedBytes > maxBytes / 4) && state.droppedHead < state.dropped.count {
                let oldest = state.dropped[state.droppedHead]
                state.dropped[state.droppedHead] = Chunk(events: [], outcomes: [], last: 0, stored: 0, bytes: 0)
                state.droppedHead += 1
                state.droppedEvents -= oldest.events.count
                state.droppedBytes -= oldest.bytes
                freed.append(oldest)
            }
            if state.droppedHead > 64 && state.droppedHead * 2 > state.dropped.count {
                state.dropped.removeFirst(state.droppedHead)
                state.droppedHead = 0
            }
        }
    }

    /// Up to `limit` events with `seq` above `seq`, in order; nil if the
    /// outbox must be read instead (`seq` is before what is kept, or nothing
    /// after it is kept).
    public func events(after seq: Int64, limit: Int) -> [StoredEvent]? {
        // The chunks the committer dropped are freed here, on the reader's thread.
        let buried = state.withLock { state -> [Chunk] in
            guard state.droppedEvents > 0 else { return [] }
            var taken: [Chunk] = []
            taken.reserveCapacity(state.dropped.count)
            swap(&taken, &state.dropped)
            state.droppedHead = 0
            state.droppedEvents = 0
            state.droppedBytes = 0
            return taken
        }
        // Freed as they go out of scope, here.
        _ = buried
        let chunks = state.withLock { state -> [Chunk]? in
            guard seq >= state.coveredAfter, seq < state.high else { return nil }
            // The first chunk that stored something above `seq`.
            var low = state.head
            var high = state.chunks.count
            while low < high {
                let middle = (low + high) / 2
                if state.chunks[middle].last <= seq { low = middle + 1 } else { high = middle }
            }
            guard low < state.chunks.count else { return nil }
            // Enough chunks for `limit` events: that one (some of its events may be
            // at or below `seq`) and `limit` more.
            var end = low + 1, count = 0
            while end < state.chunks.count && count < limit {
                count += state.chunks[end].stored
                end += 1
            }
            // A copy of the few chunks: a slice would share the array's storage,
            // and the committer's next append would copy all of it.
            return Array(state.chunks[low..<end])
        }
        guard let chunks else { return nil }
        var out: [StoredEvent] = []
        out.reserveCapacity(limit)
        for chunk in chunks {
            for (event, outcome) in zip(chunk.events, chunk.outcomes) {
                guard case .stored(let stored, _) = outcome, stored > seq else { continue }
                out.append(StoredEvent(seq: stored, event))
                if out.count == limit { return out }
            }
        }
        return out.isEmpty ? nil : out
    }

    /// Events kept right now.
    public var count: Int { state.withLock { $0.stored } }

    /// Events the array still holds in memory, kept or dropped (for tests:
    /// dropped ones must be freed as they go, not when the array is compacted).
    var heldEvents: Int {
        state.withLock { state in
            state.chunks.reduce(0) { $0 + $1.events.count } + state.dropped.reduce(0) { $0 + $1.events.count }
        }
    }
}
