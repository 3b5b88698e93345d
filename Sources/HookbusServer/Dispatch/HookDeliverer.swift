import HookbusCore
import Logging

/// Runs an in-process hook for one delivery, under the subscriber's timeout.
///
/// A hook that throws fails the attempt (retried); one that throws
/// `HookRejection` is dead-lettered at once; one that exceeds its timeout is
/// cancelled and the attempt fails. Hooks must honour task cancellation.
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

    func deliver(_ delivery: Delivery, ticket: Int) async -> AttemptResult {
        var logger = self.logger
        // Rendered only if something is logged.
        logger[metadataKey: "hookbus.seq"] = .stringConvertible(delivery.seq)
        logger[metadataKey: "hookbus.attempt"] = .stringConvertible(delivery.attempt)
        let context = HookContext(
            attempt: delivery.attempt, replay: delivery.replay, subscriber: delivery.subscriber, logger: logger,
            config: config, state: HookState(hook: delivery.subscriber, store: store))
        let hook = self.hook
        let timeout = self.timeout
        let gate = self.gate
        let rank = self.rank
        let ordered = delivery.attempt == 1 && !delivery.replay
        if ordered { await gate.waitTurn(seq: delivery.seq, rank: rank, type: delivery.event.type) }
        return await withTaskGroup(of: AttemptResult?.self) { group in
            group.addTask {
                do {
                    if ordered { gate.entered(rank: rank, seq: delivery.seq) }
                    try await hook.handle(delivery.event, context: context)
                    return .delivered
                } catch let rejection as HookRejection {
                    return .rejected("hook \(delivery.subscriber) rejected the event: \(rejection.description)")
                } catch is CancellationError {
                    return nil
                } catch {
                    return .failed("hook \(delivery.subscriber) threw: \(error)")
                }
            }
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                } catch {
                    return nil
                }
                return .failed("hook \(delivery.subscriber) timed out after \(timeout.spelled)")
            }
            var result: AttemptResult?
            while result == nil, let next = await group.next() {
                result = next
            }
            group.cancelAll()
            return result ?? .failed("hook \(delivery.subscriber) was cancelled")
        }
    }
}
