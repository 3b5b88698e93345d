import HookbusCore
import Logging
import Synchronization

/// Runs an in-process hook, each delivery under the subscriber's timeout.
///
/// A hook that throws fails the attempt (retried); one that throws
/// `HookRejection` is dead-lettered at once; one that exceeds its timeout is
/// cancelled and the attempt fails (`Deadlines` times it out, up to one sweep
/// late). Hooks must honour task cancellation.
///
/// First attempts for a hook with `concurrency = 1` come as runs: the events
/// read together, delivered one after another by one task (`deliverRun`),
/// their results sent back to the runner in one message. A delivery cost
/// three tasks and a message each before; a run costs two tasks in all.
/// Any other delivery is a run of one.
struct HookDeliverer: RunDeliverer {
    func window(full: Bool, cursor: Int64) {
        gate.window(rank: rank, full: full, cursor: cursor)
    }

    func prepare(_ delivery: Delivery) -> Int {
        if delivery.attempt == 1 && !delivery.replay { gate.launched(rank: rank, seq: delivery.seq) }
        return 0
    }

    /// Only the run's first event counts as launched at the start gate now;
    /// `deliverRun` marks each next one as it goes on to it. Marking them all
    /// would make the hooks after this one wait for a slow hook event by event.
    func prepareRun(_ deliveries: [Delivery]) -> [Int] {
        if let first = deliveries.first { _ = prepare(first) }
        return Array(repeating: 0, count: deliveries.count)
    }

    let hook: any Hook
    let timeout: Duration
    let store: Store
    let config: BrokerConfig
    let logger: Logger
    let gate: HookStartGate
    let rank: Int
    let deadlines: Deadlines

    /// One delivery (a retry, a replay, a first attempt of a hook with
    /// `concurrency` above 1) is a run of one.
    func deliver(_ delivery: Delivery, ticket: Int) async -> AttemptResult {
        await deliverRun([(delivery, ticket)], stopping: { false }).first?.result ?? cancelled(delivery)
    }

    /// Runs of up to this many first attempts go to one task.
    var runLimit: Int { Self.runLimit }
    static let runLimit = 256
    /// A run starts no delivery after it has run this long, so the runner
    /// hears of what was delivered (stats, cursor) and a stop is not held up.
    static let runBudget: Duration = .milliseconds(10)

    /// The deliveries of a run one after another in one task, each under its
    /// own timeout: a time-out cancels the task, which ends the run. First
    /// attempts (not replays) wait for their turn at the start gate.
    func deliverRun(_ deliveries: [(delivery: Delivery, ticket: Int)], stopping: @escaping @Sendable () -> Bool) async -> [RunResult] {
        let progress = RunProgress()
        await withDiscardingTaskGroup { group in
            group.addTask {
                let began = ContinuousClock.now
                for (index, (delivery, _)) in deliveries.enumerated() {
                    let context = self.context(for: delivery)
                    let ordered = delivery.attempt == 1 && !delivery.replay
                    if ordered, await gate.waitTurn(seq: delivery.seq, rank: rank, type: delivery.event.type) {
                        // Let go by the hook before this one as it enters its `handle`: give
                        // it the moment to get there (a hop through the executor) first.
                        await Task.yield()
                    }
                    // Told to stop, or timed out, during the wait: start nothing more.
                    if index > 0 && (Task.isCancelled || stopping()) { break }
                    guard progress.starting(index) else { break }
                    let start = ContinuousClock.now
                    // Patient: while ingest is pressed this thread may not run at all.
                    let watch = deadlines.watch(timeout, patient: true) {
                        progress.timedOut(index, RunResult(result: self.timedOut(delivery), micros: timeout.microseconds))
                    }
                    if ordered { gate.entered(rank: rank, seq: delivery.seq) }
                    let result = await self.handle(delivery, context: context)
                    deadlines.end(watch)
                    let ended = RunResult(result: result, micros: (ContinuousClock.now - start).microseconds)
                    // On to the next event only after a delivery, with time left; it counts
                    // as launched at once, as the first event of a new run would.
                    let next = index + 1
                    let goOn = result == .delivered && next < deliveries.count && !Task.isCancelled && !stopping()
                        && ContinuousClock.now - began < Self.runBudget
                    if goOn { gate.launched(rank: rank, seq: deliveries[next].delivery.seq) }
                    if !progress.record(index, ended) || !goOn { break }
                }
                progress.finish()
            }
            // The end of the run, or a time-out (or cancellation), whichever comes first.
            await progress.wait(cancelled: { index in
                RunResult(result: self.cancelled(deliveries[index].delivery), micros: 0)
            })
            // Timed out: the hook is cancelled and the group waits for it to return.
            group.cancelAll()
        }
        return progress.results
    }

    /// The delivery's context; its metadata comes from a provider, read only
    /// when something is logged: setting metadata makes the stream log handler
    /// render it again at once, which cost more than the rest of a small delivery.
    private func context(for delivery: Delivery) -> HookContext {
        var logger = self.logger
        let seq = delivery.seq
        let attempt = delivery.attempt
        let provider = Logger.MetadataProvider {
            ["hookbus.seq": .stringConvertible(seq), "hookbus.attempt": .stringConvertible(attempt)]
        }
        logger.handler.metadataProvider = logger.metadataProvider.map { .multiplex([$0, provider]) ?? provider } ?? provider
        if logger.metadataProvider == nil {
            // A log handler that keeps no provider: set the metadata itself.
            logger[metadataKey: "hookbus.seq"] = .stringConvertible(seq)
            logger[metadataKey: "hookbus.attempt"] = .stringConvertible(attempt)
        }
        return HookContext(
            attempt: delivery.attempt, replay: delivery.replay, subscriber: delivery.subscriber, logger: logger,
            config: config, state: HookState(hook: delivery.subscriber, store: store))
    }

    /// Calls the hook and says how the attempt ended.
    private func handle(_ delivery: Delivery, context: HookContext) async -> AttemptResult {
        let subscriber = delivery.subscriber
        do {
            try await hook.handle(delivery.event, context: context)
            return .delivered
        } catch let rejection as HookRejection {
            return .rejected("hook \(subscriber) rejected the event: \(rejection.description)")
        } catch is CancellationError {
            return cancelled(delivery)
        } catch {
            return .failed("hook \(subscriber) threw: \(error)")
        }
    }

    private func timedOut(_ delivery: Delivery) -> AttemptResult {
        .failed("hook \(delivery.subscriber) timed out after \(timeout.spelled)")
    }

    private func cancelled(_ delivery: Delivery) -> AttemptResult {
        .failed("hook \(delivery.subscriber) was cancelled")
    }

    func unstarted(from seq: Int64) {
        gate.unlaunched(rank: rank, from: seq)
    }
}

/// What a run has delivered so far, and whether it has ended: settled by the
/// run's task, a deadline or cancellation, and awaited by the run's caller.
final class RunProgress: Sendable {
    private struct State {
        var results: [RunResult] = []
        /// The delivery started last (its hook called or about to be).
        var started = -1
        /// The run's task returned, a delivery timed out, or the wait was cancelled.
        var over = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// The results so far, in order.
    var results: [RunResult] { state.withLock { $0.results } }

    /// Records how delivery `index` ended; false if the run is over (the
    /// delivery timed out, say: that result stands).
    func record(_ index: Int, _ result: RunResult) -> Bool {
        state.withLock { state in
            guard !state.over, state.results.count == index else { return false }
            state.results.append(result)
            return true
        }
    }

    /// Delivery `index` is about to start; false if the run is over already
    /// (cancelled), and it must not.
    func starting(_ index: Int) -> Bool {
        state.withLock { state in
            guard !state.over else { return false }
            state.started = index
            return true
        }
    }

    /// Delivery `index` passed its deadline: that is its result, and the run
    /// is over. A deadline that fires after the delivery was recorded (a sweep
    /// runs the action after taking it out) changes nothing.
    func timedOut(_ index: Int, _ result: RunResult) {
        end { state in
            guard state.results.count == index else { return false }
            state.results.append(result)
            return true
        }
    }

    /// The run's task is done.
    func finish() {
        end { _ in true }
    }

    /// Waits until the run is over. If the waiting task is cancelled first,
    /// the delivery under way gets the result `cancelled(index)` (none if the
    /// run is between deliveries).
    func wait(cancelled: @escaping @Sendable (Int) -> RunResult) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let over = state.withLock { state -> Bool in
                    if state.over { return true }
                    state.waiter = continuation
                    return false
                }
                if over { continuation.resume() }
            }
        } onCancel: {
            end { state in
                if state.started == state.results.count { state.results.append(cancelled(state.started)) }
                return true
            }
        }
    }

    /// Ends the run once, if `change` says so (later calls change nothing),
    /// and wakes the waiter.
    private func end(_ change: (inout State) -> Bool) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.over, change(&state) else { return nil }
            state.over = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
