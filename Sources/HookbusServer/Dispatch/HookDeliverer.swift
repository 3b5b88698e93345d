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
struct HookDeliverer: Deliverer {
    func window(full: Bool, cursor: Int64) {
        gate.window(rank: rank, full: full, cursor: cursor)
    }

    func prepare(_ delivery: Delivery) -> Int {
        if delivery.attempt == 1 && !delivery.replay { gate.launched(rank: rank, seq: delivery.seq) }
        return 0
    }

    let hook: any Hook
    let timeout: Duration
    let store: Store
    let config: BrokerConfig
    let logger: Logger
    let gate: HookStartGate
    let rank: Int
    let deadlines: Deadlines

    func deliver(_ delivery: Delivery, ticket: Int) async -> AttemptResult {
        let context = self.context(for: delivery)
        let ordered = delivery.attempt == 1 && !delivery.replay
        if ordered { await gate.waitTurn(seq: delivery.seq, rank: rank, type: delivery.event.type) }
        let slot = OutcomeSlot()
        let watch = deadlines.watch(timeout) { slot.settle(self.timedOut(delivery)) }
        return await withDiscardingTaskGroup { group in
            group.addTask {
                if ordered { gate.entered(rank: rank, seq: delivery.seq) }
                slot.settle(await self.handle(delivery, context: context))
            }
            // The hook's outcome, or the deadline's (or cancellation's), whichever comes first.
            let outcome = await slot.outcome(cancelled: self.cancelled(delivery))
            deadlines.end(watch)
            // Timed out: the hook is cancelled and the group waits for it to return.
            group.cancelAll()
            return outcome
        }
    }

    /// Runs of up to this many first attempts go to one task.
    var runLimit: Int { Self.runLimit }
    static let runLimit = 256
    /// A run starts no delivery after it has run this long, so the runner
    /// hears of what was delivered (stats, cursor) and a stop is not held up.
    static let runBudget: Duration = .milliseconds(10)

    /// The deliveries of a run one after another in one task, each under its
    /// own timeout: a time-out cancels the task, which ends the run.
    func deliverRun(_ deliveries: [(delivery: Delivery, ticket: Int)], stopping: @escaping @Sendable () -> Bool) async -> [RunResult] {
        let progress = RunProgress()
        await withDiscardingTaskGroup { group in
            group.addTask {
                let began = ContinuousClock.now
                for (index, (delivery, _)) in deliveries.enumerated() {
                    if index > 0 && (Task.isCancelled || stopping() || ContinuousClock.now - began >= Self.runBudget) { break }
                    let context = self.context(for: delivery)
                    await gate.waitTurn(seq: delivery.seq, rank: rank, type: delivery.event.type)
                    let start = ContinuousClock.now
                    let watch = deadlines.watch(timeout) {
                        progress.timedOut(index, RunResult(result: self.timedOut(delivery), micros: timeout.wholeMicroseconds))
                    }
                    gate.entered(rank: rank, seq: delivery.seq)
                    let result = await self.handle(delivery, context: context)
                    deadlines.end(watch)
                    let ended = RunResult(result: result, micros: (ContinuousClock.now - start).wholeMicroseconds)
                    if !progress.record(index, ended) || result != .delivered { break }
                }
                progress.finish()
            }
            // The end of the run, or a time-out (or cancellation), whichever comes first.
            await progress.wait(cancelled: { index in
                index < deliveries.count ? RunResult(result: self.cancelled(deliveries[index].delivery), micros: 0) : nil
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

    /// Delivery `index` passed its deadline: that is its result, and the run is over.
    func timedOut(_ index: Int, _ result: RunResult) {
        end { state in
            guard state.results.count == index else { return }
            state.results.append(result)
        }
    }

    /// The run's task is done.
    func finish() {
        end { _ in }
    }

    /// Waits until the run is over. If the waiting task is cancelled first,
    /// the delivery under way (or next) gets the result `cancelled(index)`.
    func wait(cancelled: @escaping @Sendable (Int) -> RunResult?) async {
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
                if let result = cancelled(state.results.count) { state.results.append(result) }
            }
        }
    }

    /// Ends the run once (later calls change nothing) and wakes the waiter.
    private func end(_ change: (inout State) -> Void) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.over else { return nil }
            change(&state)
            state.over = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
