import HookbusCore
import Logging

/// Runs an in-process hook for one delivery, under the subscriber's timeout.
///
/// A hook that throws fails the attempt (retried); one that throws
/// `HookRejection` is dead-lettered at once; one that exceeds its timeout is
/// cancelled and the attempt fails (`Deadlines` times it out, up to one sweep
/// late). Hooks must honour task cancellation.
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
        // The delivery's metadata comes from a provider, read only when something
        // is logged: setting metadata makes the stream log handler render it again
        // at once, which cost more than the rest of a small delivery.
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
        let context = HookContext(
            attempt: delivery.attempt, replay: delivery.replay, subscriber: delivery.subscriber, logger: logger,
            config: config, state: HookState(hook: delivery.subscriber, store: store))
        let hook = self.hook
        let timeout = self.timeout
        let gate = self.gate
        let rank = self.rank
        let ordered = delivery.attempt == 1 && !delivery.replay
        if ordered { await gate.waitTurn(seq: delivery.seq, rank: rank, type: delivery.event.type) }
        let slot = OutcomeSlot()
        let subscriber = delivery.subscriber
        let watch = deadlines.watch(timeout) { slot.settle(.failed("hook \(subscriber) timed out after \(timeout.spelled)")) }
        return await withDiscardingTaskGroup { group in
            group.addTask {
                do {
                    if ordered { gate.entered(rank: rank, seq: delivery.seq) }
                    try await hook.handle(delivery.event, context: context)
                    slot.settle(.delivered)
                } catch let rejection as HookRejection {
                    slot.settle(.rejected("hook \(subscriber) rejected the event: \(rejection.description)"))
                } catch is CancellationError {
                    slot.settle(.failed("hook \(subscriber) was cancelled"))
                } catch {
                    slot.settle(.failed("hook \(subscriber) threw: \(error)"))
                }
            }
            // The hook's outcome, or the deadline's (or cancellation's), whichever comes first.
            let outcome = await slot.outcome(cancelled: .failed("hook \(subscriber) was cancelled"))
            deadlines.end(watch)
            // Timed out: the hook is cancelled and the group waits for it to return.
            group.cancelAll()
            return outcome
        }
    }
}
