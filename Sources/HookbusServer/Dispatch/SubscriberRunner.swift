import HookbusCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Delivers one subscriber's events: in `seq` order, at most `concurrency` at
/// a time, with durable retries and dead letters.
///
/// The window holds deliveries in flight and retries waiting for their time,
/// so with `concurrency = 1` a retrying delivery holds back the ones after it
/// (strict order), and with N it occupies one of N places. The cursor moves
/// past a `seq` only once it is delivered, dead-lettered or has a retry row, so
/// a crash loses nothing: what was in flight is delivered again at startup.
final class SubscriberRunner: Sendable {
    enum Message: Sendable {
        case wake
        case done(seq: Int64, attempt: Int, wasRetry: Bool, replay: Bool, result: AttemptResult, micros: Int64)
        /// The run under way ended: the results of the deliveries it started, in order.
        case ran([RunResult])
        case tick
        /// A second after a failed read of skipped retry rows: read them again.
        case readSkippedAgain
        /// A background write of `count` ledger ops (and `notices` dead-letter
        /// announcements) ended.
        case flushed(count: Int, notices: Int, ok: Bool)
        /// Retry rows were added from outside (replay, dead-letter retry): read them.
        case reload
        case stop
    }

    let subscriber: SubscriberConfig
    let kind: String
    let stats: SubscriberStats
    private let store: Store
    private let committer: Committer
    let deliverer: any Deliverer
    /// The same deliverer if it takes runs (in-process hooks).
    private let runs: (any RunDeliverer)?
    private let limiter: InflightLimiter
    private let signal: SeqSignal
    private let logger: Logger
    private let onDeadLetter: @Sendable (DeadLetterNotice) async -> Void
    private let initialCursor: Int64
    private let messages: AsyncStream<Message>
    private let mailbox: AsyncStream<Message>.Continuation
    private let wakePending = Atomic<Bool>(false)
    /// `stop` was called: a run under way starts no more deliveries.
    private let stopRequested = Atomic<Bool>(false)
    /// Events read from the outbox at a time.
    static let fetchBatch = 256
    /// Retry rows read at a time (a replay of millions comes in slices). A
    /// test seam: HOOKBUS_RETRY_SLICE sets it.
    static let retrySlice = getenv("HOOKBUS_RETRY_SLICE").flatMap { Int(String(cString: $0)) }.map { max(1, $0) } ?? 10_000
    /// A test seam: HOOKBUS_FAIL_SKIPPED_READS makes each runner's first N
    /// reads of skipped retry rows (`loadSkipped`) fail, as a storage error would.
    static let failSkippedReads = getenv("HOOKBUS_FAIL_SKIPPED_READS").flatMap { Int(String(cString: $0)) } ?? 0
    /// And about this many bytes of them at most: a lagging subscriber of
    /// 1 MiB events held 256 MiB of them per read otherwise.
    static let fetchBytes = 4 << 20
    /// The longest a cursor move waits to be written with the next ones (µs).
    static let cursorInterval: Int64 = 20_000

    init(
        subscriber: SubscriberConfig, kind: String, store: Store, committer: Committer, deliverer: any Deliverer,
        limiter: InflightLimiter, signal: SeqSignal, logger: Logger, initialCursor: Int64? = nil,
        onDeadLetter: @escaping @Sendable (DeadLetterNotice) async -> Void
    ) throws {
        self.subscriber = subscriber
        self.kind = kind
        self.store = store
        self.committer = committer
        self.deliverer = deliverer
        self.runs = deliverer as? any RunDeliverer
        self.limiter = limiter
        self.signal = signal
        var logger = logger
        logger[metadataKey: "hookbus.subscriber"] = "\(subscriber.name)"
        self.logger = logger
        self.onDeadLetter = onDeadLetter
        self.stats = SubscriberStats(name: subscriber.name, kind: kind, types: subscriber.types)
        // A subscriber seen for the first time starts after what is stored now;
        // `hookbus replay` hands it older events.
        self.initialCursor = try store.cursor(for: subscriber.name, initial: try initialCursor ?? store.lastSeq())
        (messages, mailbox) = AsyncStream<Message>.makeStream()
        let dead = try store.deadLetterCount(for: subscriber.name)
        stats.update {
            $0.cursor = self.initialCursor
            $0.dead = dead
        }
    }

    /// Something new was committed.
    func wake() {
        if !wakePending.exchange(true, ordering: .sequentiallyConsistent) {
            mailbox.yield(.wake)
        }
    }

    /// Re-reads the retry rows (after a replay or a dead-letter retry).
    func reload() {
        mailbox.yield(.reload)
    }

    /// Start nothing new; finish what is in flight, record it, return.
    func stop() {
        stopRequested.store(true, ordering: .relaxed)
        mailbox.yield(.stop)
    }

    func run() async {
        // New events come from the committer's ring while this runs.
        committer.recent.addReader()
        defer { committer.recent.removeReader() }
        var loop = Loop(runner: self, cursor: initialCursor)
        loop.loadRetries()
        do {
            loop.settledAbove = try store.deadLetteredSeqs(for: subscriber.name, above: initialCursor)
        } catch {
            logger.error("cannot read dead letters", metadata: ["hookbus.error": "\(error)"])
        }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.deliverer.run() }
            loop.fill(&group)
            var iterator = messages.makeAsyncIterator()
            while let message = await iterator.next() {
                switch message {
                case .wake:
                    wakePending.store(false, ordering: .sequentiallyConsistent)
                case .tick:
                    // Maybe the held-back cursor write's tick: look again (and arm another if early).
                    loop.cursorDue = nil
                    // Whatever tick this was, `fill` arms the next one for what still
                    // waits (a tick that came early, the wall clock stepped back, must
                    // not leave a retry without one).
                    loop.nextTick = .max
                case .readSkippedAgain:
                    // One armed at a time; another failure arms the next.
                    loop.readSkippedArmed = false
                    if !loop.stopping { loop.loadSkipped(&group) }
                case .reload:
                    loop.loadRetries()
                case .stop:
                    loop.stopping = true
                case .done(let seq, let attempt, let wasRetry, let replay, let result, let micros):
                    loop.finish(seq: seq, attempt: attempt, wasRetry: wasRetry, replay: replay, result: result, micros: micros)
                case .ran(let results):
                    loop.finishRun(results)
                case .flushed(let count, let notices, let ok):
                    loop.flushed(count: count, notices: notices, ok: ok, group: &group)
                }
                if !loop.stopping { loop.fill(&group) }
                loop.startFlush(&group)
                if loop.stopping && loop.inFlight == 0 && !loop.flushing { break }
            }
            // Stopped (or cancelled): write what is left, in this task.
            await loop.finalFlush()
            group.cancelAll()
        }
    }

    fileprivate func launch(_ delivery: Delivery, wasRetry: Bool, in group: inout DiscardingTaskGroup) {
        let mailbox = self.mailbox
        let ticket = deliverer.prepare(delivery)
        let limited = deliverer.usesGlobalLimit
        group.addTask {
            if limited { await self.limiter.acquire() }
            let start = ContinuousClock.now
            let result = await self.deliverer.deliver(delivery, ticket: ticket)
            if limited { self.limiter.release() }
            let elapsed = ContinuousClock.now - start
            mailbox.yield(.done(seq: delivery.seq, attempt: delivery.attempt, wasRetry: wasRetry, replay: delivery.replay,
                                result: result, micros: elapsed.microseconds))
        }
    }

    /// Hands a run of first attempts to one task (in-process hooks, `concurrency = 1`).
    fileprivate func launchRun(_ events: [StoredEvent], on deliverer: any RunDeliverer, in group: inout DiscardingTaskGroup) {
        let mailbox = self.mailbox
        let run = events.map { Delivery(subscriber: subscriber.name, event: $0, attempt: 1, replay: false) }
        let deliveries = Array(zip(run, deliverer.prepareRun(run))).map { (delivery: $0.0, ticket: $0.1) }
        let limited = deliverer.usesGlobalLimit
        group.addTask {
            // One place under `max_inflight`: a run delivers one event at a time.
            if limited { await self.limiter.acquire() }
            let results = await deliverer.deliverRun(deliveries) { self.stopRequested.load(ordering: .relaxed) }
            if limited { self.limiter.release() }
            mailbox.yield(.ran(results))
        }
    }

    fileprivate func scheduleTick(at micros: Int64, in group: inout DiscardingTaskGroup, message: Message = .tick) {
        let mailbox = self.mailbox
        let delay = max(0, micros - Timestamp.nowMicros())
        group.addTask {
            do {
                try await Task.sleep(for: .microseconds(delay))
                mailbox.yield(message)
            } catch {}
        }
    }

    /// The runner's state; lives inside `run()` only, so it needs no lock.
    fileprivate struct Loop {
        let runner: SubscriberRunner
        var cursor: Int64
        var scanned: Int64
        var buffer: [StoredEvent] = []
        var bufferIndex = 0
        /// Events of a run that ended before starting them: delivered before the buffer's.
        var pushback: [StoredEvent] = []
        /// The events of the run under way (their seqs are in `firstInFlight`).
        var run: [StoredEvent] = []
        var firstInFlight = Set<Int64>()
        /// Retries under way, with the stored row each was started from.
        var retryInFlight: [Int64: RetryRow] = [:]
        var waiting = RetryQueue()
        var ops: [LedgerOp] = []
        var deadLetters: [DeadLetterNotice] = []
        var stopping = false
        /// More retry rows are stored than were loaded (a large replay).
        var retriesTruncated = false
        /// Rows a replay (or a dead-letter retry) wrote for events whose first
        /// attempt was under way when they were read: due once that attempt ends.
        var replayedInFlight: [Int64: RetryRow] = [:]
        /// Seqs whose stored row a read of the retry rows left out (a retry under
        /// way, ops not yet written): read back once they are settled (`loadSkipped`).
        var skipped = Set<Int64>()
        /// A failed read of `skipped` is tried again a second later
        /// (`readSkippedAgain`, one armed at a time): a runner with nothing
        /// else to write must not leave those rows unread until its next event.
        var readSkippedArmed = false
        var failSkippedReads = SubscriberRunner.failSkippedReads
        var nextTick: Int64 = .max
        /// Seqs above the cursor dead-lettered before a restart.
        var settledAbove = Set<Int64>()

        init(runner: SubscriberRunner, cursor: Int64) {
            self.runner = runner
            self.cursor = cursor
            self.scanned = cursor
        }

        var inFlight: Int { firstInFlight.count + retryInFlight.count }

        /// Reads the stored retry rows. Bounded, so a replay of millions of
        /// events is taken in slices.
        ///
        /// Left out: the rows of retries under way and those that ledger ops not
        /// yet written change (a retry delivered, rescheduled or dead-lettered a
        /// moment ago): what is stored for them is older than what this runner
        /// knows. (Reading them again made the slices of a replay of 50,000
        /// events deliver 26-201 of them twice; marking the rows of retries in
        /// flight to be read again when they ended made a replay at concurrency
        /// 8 read the rows after every delivery: 7 minutes for 50,000 events.)
        /// They are read back once their attempt has ended and its ops are
        /// written (`loadSkipped`), and a replay written meanwhile is not lost:
        /// the ops delete a retry row only if it is still the one the attempt
        /// started from (`startedFrom`). Rows of first attempts under way are
        /// replays: due once the attempt ends (`replayedInFlight`).
        mutating func loadRetries() {
            let limit = SubscriberRunner.retrySlice
            prefetched.removeAll()
            do {
                let rows = try runner.store.retries(for: runner.subscriber.name, limit: limit)
                retriesTruncated = rows.count == limit
                var loaded: [RetryRow] = []
                loaded.reserveCapacity(rows.count)
                let pending = pendingSeqs
                for row in rows {
                    if retryInFlight[row.seq] != nil || pending.contains(row.seq) {
                        skipped.insert(row.seq)
                    } else if firstInFlight.contains(row.seq) {
                        // Replayed while its first attempt is under way: due once it ends.
                        replayedInFlight[row.seq] = row
                    } else {
                        loaded.append(row)
                    }
                }
                waiting.load(loaded)
            } catch {
                runner.logger.error("cannot load retries", metadata: ["hookbus.error": "\(error)"])
            }
        }
        var occupancy: Int { inFlight + waiting.count }

        /// Seqs whose retry row ledger ops not yet written (or being written) change.
        var pendingSeqs: Set<Int64> { Set(ops.compactMap(\.retrySeq)) }

        /// Events read ahead for the retries due next (a replay makes
        /// thousands due at once: one read each made a replay take twice as
        /// long as the events' first delivery).
        var prefetched: [Int64: StoredEvent] = [:]

        /// The stored event of a due retry, nil if it is gone: read ahead with
        /// the events of the retries due after it (`upcoming`), unless it was.
        static func retryEvent(_ seq: Int64, upcoming: () -> [Int64], prefetched: inout [Int64: StoredEvent],
                               store: Store) throws -> StoredEvent? {
            if let event = prefetched.removeValue(forKey: seq) { return event }
            prefetched.removeAll(keepingCapacity: true)
            let seqs = upcoming()
            guard seqs.count > 1 else { return try store.event(seq: seq) }
            for event in try store.events(seqs: seqs, maxBytes: SubscriberRunner.fetchBytes) {
                prefetched[event.seq] = event
            }
            return prefetched.removeValue(forKey: seq)
        }

        mutating func fill(_ group: inout DiscardingTaskGroup) {
            let config = runner.subscriber
            guard runner.deliverer.accepting else {
                stopping = true
                return
            }
            let now = Timestamp.nowMicros()
            // Due retries first: they are older than anything new. A retry waiting
            // for its time takes a place as if it were in flight, so the places go
            // to the lowest seqs: with `concurrency = 1`, a replayed or retried
            // batch is delivered in seq order, each event settled before the next.
            if waiting.isEmpty && retriesTruncated { loadRetries() }
            let earliest = waiting.scan(places: config.concurrency - inFlight, now: now) { row, upcoming in
                let stored: StoredEvent?
                do {
                    stored = try Self.retryEvent(row.seq, upcoming: upcoming, prefetched: &prefetched, store: runner.store)
                } catch {
                    // Storage trouble is not a missing event: keep the row, try later.
                    runner.logger.error("cannot read an event to retry", metadata: ["hookbus.seq": "\(row.seq)", "hookbus.error": "\(error)"])
                    return .stop
                }
                guard let event = stored else {
                    runner.logger.warning("retry of an event no longer in the outbox dropped", metadata: ["hookbus.seq": "\(row.seq)"])
                    ops.append(.clearRetry(subscriber: config.name, seq: row.seq))
                    return .dropped
                }
                retryInFlight[row.seq] = row
                runner.launch(Delivery(subscriber: config.name, event: event, attempt: row.attempt + 1, replay: row.replay),
                              wasRetry: true, in: &group)
                return .launched
            }
            // A subscriber that takes one event at a time, and can, takes a run of them in one task.
            let runs = config.concurrency == 1 ? runner.runs : nil
            while occupancy < config.concurrency, let event = nextFirstAttempt(refilling: true) {
                firstInFlight.insert(event.seq)
                guard let runs, runs.runLimit > 1 else {
                    runner.launch(Delivery(subscriber: config.name, event: event, attempt: 1, replay: false), wasRetry: false, in: &group)
                    continue
                }
                run = [event]
                while run.count < runs.runLimit, let next = nextFirstAttempt(refilling: false) {
                    firstInFlight.insert(next.seq)
                    run.append(next)
                }
                runner.launchRun(run, on: runs, in: &group)
            }
            // A full window (a retry holding the line, say) must not hold the cursor
            // below events of other types: read ahead to the next one it takes.
            if occupancy >= config.concurrency && bufferIndex >= buffer.count { _ = refill() }
            // Wake up for the earliest retry that holds a place and waits for its
            // time. (Rows past the places cannot start before a place frees up,
            // and a place freeing up runs `fill` again.)
            if let earliest, earliest < nextTick || nextTick <= now {
                nextTick = earliest
                runner.scheduleTick(at: earliest, in: &group)
            }
            advanceCursor()
            publishStats()
        }

        /// The next event to attempt for the first time: pushed back ones first,
        /// then the buffer's (read from the outbox if `refilling`); nil if none.
        mutating func nextFirstAttempt(refilling: Bool) -> StoredEvent? {
            while true {
                let event: StoredEvent
                if !pushback.isEmpty {
                    event = pushback.removeFirst()
                } else {
                    if bufferIndex >= buffer.count && !(refilling && refill()) { return nil }
                    event = buffer[bufferIndex]
                    bufferIndex += 1
                }
                // Above the cursor a seq may already have a row of its own (settled
                // before a crash with concurrency > 1): it is not a first attempt.
                if waiting[event.seq] != nil || retryInFlight[event.seq] != nil || settledAbove.contains(event.seq) { continue }
                return event
            }
        }

        /// Reads the next events after `scanned` until some match; false if
        /// the outbox has none left. Events of other types only move `scanned`.
        mutating func refill() -> Bool {
            while true {
                // Everything up to `known` is committed: the signal is raised after the commit.
                let known = runner.signal.last
                guard scanned < known else { return false }
                let events: [StoredEvent]
                do {
                    // The latest commits are in memory; older events (a lagging
                    // subscriber, a restart) come from the outbox.
                    events = try runner.committer.recent.events(after: scanned, limit: SubscriberRunner.fetchBatch)
                        ?? runner.store.events(after: scanned, limit: SubscriberRunner.fetchBatch,
                                               maxBytes: SubscriberRunner.fetchBytes)
                } catch {
                    runner.logger.error("cannot read the outbox", metadata: ["hookbus.error": "\(error)"])
                    return false
                }
                guard let last = events.last else {
                    // Gaps (pruned events, or duplicates before migration v4) hold no event.
                    scanned = known
                    return false
                }
                scanned = last.seq
                buffer = events.filter { runner.subscriber.types.matches($0.type) }
                bufferIndex = 0
                if !buffer.isEmpty { return true }
            }
        }

        /// Settles one attempt; `publish`: move the cursor and tell the stats now
        /// (a run's results call it once, after the last).
        mutating func finish(seq: Int64, attempt: Int, wasRetry: Bool, replay: Bool, result: AttemptResult, micros: Int64,
                             publish: Bool = true) {
            let name = runner.subscriber.name
            firstInFlight.remove(seq)
            // The row the attempt started from, if any: its retry row is deleted
            // only if still the same (a replay written meanwhile stays).
            let startedFrom = retryInFlight.removeValue(forKey: seq)?.nextAttemptAt ?? (wasRetry ? nil : Int64.min)
            // A replay that came during this first attempt: due now, whatever the attempt did.
            let replayed = replayedInFlight.removeValue(forKey: seq)
            let now = Timestamp.nowMicros()
            switch result {
            case .delivered:
                runner.stats.recordDelivered(micros: micros)
                // A retry that was not a replay leaves a replay requested meanwhile in place.
                if wasRetry { ops.append(.clearRetry(subscriber: name, seq: seq, keepReplay: !replay, startedFrom: startedFrom)) }
                if let replayed { waiting.insert(replayed) }
                runner.logger.debug("delivered", metadata: ["hookbus.seq": "\(seq)", "hookbus.attempt": "\(attempt)"])
            case .failed(let error), .rejected(let error), .interrupted(let error):
                // The subscriber's connection is gone: start nothing more on it.
                if case .interrupted = result { stopping = true }
                runner.stats.recordFailure(error, at: now)
                // An unnamed subscription that has gone is forgotten with its rows
                // (what it did not acknowledge goes to nobody): its end records
                // nothing, dead-letters nothing and announces nothing.
                if case .interrupted = result, name.hasPrefix("~") { break }
                // A replay of this event came meanwhile: it goes out now, as a replay.
                if let replayed {
                    // Its row (which the ops below leave or update) is due now too.
                    var row = replayed
                    row.attempt = max(row.attempt, attempt)
                    row.lastError = error
                    ops.append(.scheduleRetry(subscriber: name, seq: seq, attempt: row.attempt, nextAttemptAt: row.nextAttemptAt,
                                              error: error, replay: true))
                    waiting.insert(row)
                    runner.logger.info("attempt failed; a replay of the event is due", metadata: [
                        "hookbus.seq": "\(seq)", "hookbus.attempt": "\(attempt)", "hookbus.error": "\(error)",
                    ])
                    break
                }
                var reason: DeadLetterReason?
                if case .rejected = result { reason = .rejected }
                if reason == nil && runner.subscriber.retry.exhausted(after: attempt) { reason = .maxAttempts }
                if let reason {
                    ops.append(.deadLetter(subscriber: name, seq: seq, attempts: attempt, error: error, reason: reason, replay: replay,
                                           startedFrom: startedFrom))
                    deadLetters.append(DeadLetterNotice(subscriber: name, seq: seq, attempts: attempt, error: error, reason: reason))
                    runner.stats.update { $0.dead += 1 }
                    runner.logger.warning("dead-lettered", metadata: [
                        "hookbus.seq": "\(seq)", "hookbus.attempt": "\(attempt)", "hookbus.reason": "\(reason.rawValue)",
                        "hookbus.error": "\(error)",
                    ])
                } else {
                    var delay = runner.subscriber.retry.delay(afterAttempt: attempt, unit: Double.random(in: 0..<1))
                    if case .interrupted = result { delay = .zero }
                    let next = now + delay.milliseconds * 1000
                    ops.append(.scheduleRetry(subscriber: name, seq: seq, attempt: attempt, nextAttemptAt: next,
                                              error: error, replay: replay))
                    waiting.insert(RetryRow(seq: seq, attempt: attempt, nextAttemptAt: next, lastError: error, replay: replay))
                    runner.logger.info("attempt failed; retry scheduled", metadata: [
                        "hookbus.seq": "\(seq)", "hookbus.attempt": "\(attempt)", "hookbus.retry_in": "\(delay.spelled)",
                        "hookbus.error": "\(error)",
                    ])
                }
            }
            if publish {
                advanceCursor()
                publishStats()
            }
        }

        /// The run under way ended: settles the deliveries it started and puts
        /// the ones it did not start back, ahead of everything else.
        mutating func finishRun(_ results: [RunResult]) {
            let events = run
            run = []
            let started = min(results.count, events.count)
            let rest = events[started...]
            for event in rest { firstInFlight.remove(event.seq) }
            pushback.insert(contentsOf: rest, at: 0)
            // A replay of one of them came while it was in the run: due now.
            for event in rest {
                if let replayed = replayedInFlight.removeValue(forKey: event.seq) { waiting.insert(replayed) }
            }
            for (event, ended) in zip(events, results) {
                finish(seq: event.seq, attempt: 1, wasRetry: false, replay: false, result: ended.result, micros: ended.micros,
                       publish: false)
            }
            advanceCursor()
            publishStats()
            // The window as it is now went to the start gate first; then the events
            // not started count as not launched. If nothing waits, the window is not
            // full, so the hooks after this one still wait for them (the next run
            // starts them at once); if a retry waits, they need not.
            if let first = rest.first { runner.runs?.unstarted(from: first.seq) }
        }

        /// Moves the cursor up to just before the oldest first attempt not yet
        /// settled (in flight, or read but not started).
        mutating func advanceCursor() {
            var limit = scanned
            if let oldest = firstInFlight.min() { limit = min(limit, oldest - 1) }
            if let first = pushback.first { limit = min(limit, first.seq - 1) }
            if bufferIndex < buffer.count { limit = min(limit, buffer[bufferIndex].seq - 1) }
            if limit > cursor {
                cursor = limit
                ops.append(.advanceCursor(subscriber: runner.subscriber.name, seq: limit))
            }
        }

        func publishStats() {
            runner.deliverer.window(full: occupancy >= runner.subscriber.concurrency, cursor: cursor)
            let retrying = waiting.count + retryInFlight.count
            // A run delivers one event at a time.
            let inFlight = run.isEmpty ? self.inFlight : self.inFlight - run.count + 1
            let cursor = self.cursor
            runner.stats.update {
                $0.retrying = retrying
                $0.inFlight = inFlight
                $0.cursor = cursor
            }
        }

        /// A write of ledger ops is under way (one at a time, so their order holds).
        var flushing = false
        /// After a failed write, the next waits until then (µs), so a storage
        /// outage is retried once a second, not in a tight loop.
        var noFlushBefore: Int64 = 0
        /// The ops and notices that write carries, and where its end is told.
        var flushBatch = (count: 0, notices: 0)
        let flushEnd = FlushEnd()
        /// When the last write began (µs), and when a write of cursor moves
        /// alone, held back until `cursorInterval` after it, is due.
        var lastFlush: Int64 = 0
        var cursorDue: Int64?

        /// Writes the pending state changes in the background: deliveries go on
        /// while the commit (and its fsync) runs, and everything that completed
        /// meanwhile goes into the next write, together. On failure the ops stay
        /// at the front and are written with the next ones.
        mutating func startFlush(_ group: inout DiscardingTaskGroup) {
            let now = Timestamp.nowMicros()
            guard !flushing, !ops.isEmpty, now >= noFlushBefore else { return }
            // Cursor moves alone wait up to `cursorInterval` after the last write:
            // a subscriber that keeps up writes its cursor a few dozen times a
            // second, not into every commit (a page of WAL and the committer's
            // time each). A crash then delivers at most that much again, as
            // at-least-once allows. Retries, dead letters and a stop are written at once.
            if !stopping, ops.allSatisfy(\.isCursorMove), now < lastFlush + SubscriberRunner.cursorInterval {
                if cursorDue == nil {
                    cursorDue = lastFlush + SubscriberRunner.cursorInterval
                    runner.scheduleTick(at: lastFlush + SubscriberRunner.cursorInterval, in: &group)
                }
                return
            }
            lastFlush = now
            cursorDue = nil
            flushing = true
            let batch = ops
            let notices = deadLetters
            flushBatch = (batch.count, notices.count)
            let runner = self.runner
            let end = flushEnd
            end.begin()
            group.addTask {
                let result = await runner.committer.record(batch)
                if case .success = result {
                    for notice in notices { await runner.onDeadLetter(notice) }
                } else if case .failure(let error) = result {
                    runner.logger.error("cannot record delivery state; will retry", metadata: ["hookbus.error": "\(error.message)"])
                }
                let ok: Bool
                if case .success = result { ok = true } else { ok = false }
                end.end(ok: ok)
                runner.mailbox.yield(.flushed(count: batch.count, notices: notices.count, ok: ok))
            }
        }

        mutating func flushed(count: Int, notices: Int, ok: Bool, group: inout DiscardingTaskGroup) {
            guard flushing else { return }  // already settled by `finalFlush`
            flushing = false
            if ok {
                ops.removeFirst(count)
                deadLetters.removeFirst(notices)
                if !skipped.isEmpty && !stopping { loadSkipped(&group) }
            } else {
                // Try again in a second, even if nothing else happens meanwhile.
                noFlushBefore = Timestamp.nowMicros() + 1_000_000
                runner.scheduleTick(at: noFlushBefore, in: &group)
            }
        }

        /// Reads back the rows a read of the retry rows left out (`skipped`)
        /// whose attempt has ended and whose ops are written: what is stored
        /// for them now is what this runner knows, or a replay (or dead-letter
        /// retry) that came meanwhile, due now.
        mutating func loadSkipped(_ group: inout DiscardingTaskGroup) {
            let pending = pendingSeqs
            let settled = skipped.filter { retryInFlight[$0] == nil && !pending.contains($0) }
            if settled.isEmpty { return }
            do {
                if failSkippedReads > 0 {
                    failSkippedReads -= 1
                    throw StoreError(.other, "a read failed (HOOKBUS_FAIL_SKIPPED_READS)")
                }
                let rows = try runner.store.retries(for: runner.subscriber.name, seqs: settled.sorted())
                skipped.subtract(settled)
                for row in rows {
                    if firstInFlight.contains(row.seq) { replayedInFlight[row.seq] = row } else { waiting.insert(row) }
                }
            } catch {
                // Tried again in a second, or after the next write if that comes first.
                runner.logger.error("cannot read retries back; trying again in a second", metadata: ["hookbus.error": "\(error)"])
                if !readSkippedArmed {
                    readSkippedArmed = true
                    runner.scheduleTick(at: Timestamp.nowMicros() + 1_000_000, in: &group, message: .readSkippedAgain)
                }
            }
        }

        /// The last write, awaited: at shutdown nothing is left to a background task.
        mutating func finalFlush() async {
            if flushing {
                // Its message may never be read now: learn its end directly.
                let ok = await flushEnd.wait()
                flushing = false
                if ok {
                    ops.removeFirst(flushBatch.count)
                    deadLetters.removeFirst(flushBatch.notices)
                }
            }
            for _ in 0..<3 where !ops.isEmpty {
                let batch = ops
                switch await runner.committer.record(batch) {
                case .success:
                    ops.removeFirst(batch.count)
                    let notices = deadLetters
                    deadLetters.removeAll()
                    for notice in notices { await runner.onDeadLetter(notice) }
                case .failure(let error):
                    runner.logger.error("cannot record delivery state at shutdown; it is delivered again at the next start",
                                        metadata: ["hookbus.error": "\(error.message)"])
                }
            }
        }
    }
}

/// The end of one background ledger write, for whoever must wait for it.
final class FlushEnd: Sendable {
    private struct State {
        var running = false
        var ok = true
        var waiter: CheckedContinuation<Bool, Never>?
    }

    private let state = Mutex(State())

    func begin() {
        state.withLock { $0.running = true }
    }

    func end(ok: Bool) {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.running = false
            state.ok = ok
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: ok)
    }

    /// Waits until the write under way has ended; true if it succeeded.
    func wait() async -> Bool {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool? in
                guard state.running else { return state.ok }
                state.waiter = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}

extension LedgerOp {
    var isCursorMove: Bool {
        if case .advanceCursor = self { true } else { false }
    }

    /// The seq whose retry row this changes (nil for a cursor move).
    var retrySeq: Int64? {
        switch self {
        case .advanceCursor: nil
        case .scheduleRetry(_, let seq, _, _, _, _), .clearRetry(_, let seq, _, _), .deadLetter(_, let seq, _, _, _, _, _): seq
        }
    }
}

/// What the dispatcher needs to announce a dead letter on the bus.
struct DeadLetterNotice: Sendable {
    var subscriber: String
    var seq: Int64
    var attempts: Int
    var error: String
    var reason: DeadLetterReason
}
