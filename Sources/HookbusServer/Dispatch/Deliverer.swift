import HookbusCore

/// Hands one delivery to a subscriber and reports how the attempt ended.
///
/// Implementations never throw: every failure is an `AttemptResult`, with a
/// message that says what happened (exit status, timeout, stderr tail, ...).
protocol Deliverer: Sendable {
    /// Called on the runner's own task, in the order deliveries start (seq
    /// order for first attempts). Deliverers that write to a stream (pipe,
    /// socket) queue the line here, so it goes out in that order; the ticket
    /// comes back in `deliver`.
    func prepare(_ delivery: Delivery) -> Int
    func deliver(_ delivery: Delivery, ticket: Int) async -> AttemptResult
    /// True if deliveries take a place under the global `max_inflight` cap.
    /// Streamed deliverers are bounded by their own window instead: waiting for
    /// a place would break the order their lines were queued in.
    var usesGlobalLimit: Bool { get }
    /// Long-running work the deliverer needs (a supervised process, a writer);
    /// runs until cancelled. Most deliverers need none.
    func run() async
    /// The runner's window filled or freed; `cursor` is where it has settled.
    func window(full: Bool, cursor: Int64)
    /// False once nothing more can be delivered (a socket subscriber's
    /// connection closed): the runner starts nothing more, rather than
    /// attempts that fail at once and count.
    var accepting: Bool { get }
}

/// A deliverer that also takes runs of first attempts (in-process hooks): a
/// subscriber with `concurrency = 1` hands over the events it read together
/// at once, delivered one after another by one task.
protocol RunDeliverer: Deliverer {
    /// At most this many first attempts go to one run.
    var runLimit: Int { get }
    /// Called on the runner's task, instead of `prepare`, for a run about to go
    /// to `deliverRun`; returns each delivery's ticket.
    func prepareRun(_ deliveries: [Delivery]) -> [Int]
    /// Delivers a run of first attempts one after another, in order, and
    /// returns the results of those it started, in order. It stops after the
    /// first that was not delivered (the ones after it wait for its retry), and
    /// starts no more once `stopping` says so or the run has taken long enough;
    /// the rest come back to the runner unstarted. Each delivery comes with
    /// the ticket `prepareRun` gave it.
    func deliverRun(_ deliveries: [(delivery: Delivery, ticket: Int)], stopping: @escaping @Sendable () -> Bool) async -> [RunResult]
    /// A run ended before it started `seq`: that seq and the ones after it
    /// were never started (they go back to the runner).
    func unstarted(from seq: Int64)
}

/// How one delivery of a run ended, and how long it took.
struct RunResult: Sendable, Equatable {
    var result: AttemptResult
    var micros: Int64
}

extension Deliverer {
    func prepare(_ delivery: Delivery) -> Int { 0 }
    var usesGlobalLimit: Bool { true }
    func run() async {}
    func window(full: Bool, cursor: Int64) {}
    var accepting: Bool { true }
}

/// The answers of a streamed deliverer (pipe, socket), by delivery number: an
/// answer may come before `deliver` starts waiting for it, so it is kept.
struct AnswerBook {
    private var waiters: [Int: CheckedContinuation<AttemptResult, Never>] = [:]
    private var early: [Int: AttemptResult] = [:]
    /// Numbers handed out and not yet answered.
    private(set) var open: Set<Int> = []

    mutating func opened(_ id: Int) { open.insert(id) }

    /// Registers a waiter, or returns the answer that is already there.
    mutating func wait(_ id: Int, _ continuation: CheckedContinuation<AttemptResult, Never>) -> AttemptResult? {
        if let answer = early.removeValue(forKey: id) { return answer }
        guard open.contains(id) else { return .failed("delivery \(id) was already answered") }
        waiters[id] = continuation
        return nil
    }

    /// Records an answer; returns the waiter to resume (outside the lock), if any.
    /// False in the second element when no delivery with that number is open.
    mutating func answer(_ id: Int, _ result: AttemptResult) -> (CheckedContinuation<AttemptResult, Never>?, Bool) {
        guard open.remove(id) != nil else { return (nil, false) }
        if let waiter = waiters.removeValue(forKey: id) { return (waiter, true) }
        early[id] = result
        return (nil, true)
    }

    /// Answers everything open with `result`; returns the waiters to resume.
    mutating func answerAll(_ result: AttemptResult) -> [CheckedContinuation<AttemptResult, Never>] {
        for id in open where waiters[id] == nil { early[id] = result }
        open.removeAll()
        defer { waiters.removeAll() }
        return Array(waiters.values)
    }

    /// Answers the given numbers with `result`.
    mutating func answer(_ ids: [Int], _ result: AttemptResult) -> [CheckedContinuation<AttemptResult, Never>] {
        ids.compactMap { answer($0, result).0 }
    }
}

/// Waits for the answer to a streamed delivery (pipe, socket), at most
/// `timeout` (timed out by a sweep of `deadlines`, which then calls `timedOut`
/// once for the failure's message: it may act on the hung subscriber too).
/// `register` files the continuation, or returns the answer if it came
/// already; `resolve` answers the delivery (the first answer wins).
func awaitAnswer(
    deadlines: Deadlines, timeout: Duration, timedOut: @escaping @Sendable () -> String, cancelled: String,
    register: (CheckedContinuation<AttemptResult, Never>) -> AttemptResult?,
    resolve: @escaping @Sendable (AttemptResult) -> Void
) async -> AttemptResult {
    let watch = deadlines.watch(timeout) { resolve(.failed(timedOut())) }
    defer { deadlines.end(watch) }
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
            if let ready = register(continuation) { continuation.resume(returning: ready) }
        }
    } onCancel: {
        resolve(.failed(cancelled))
    }
}
