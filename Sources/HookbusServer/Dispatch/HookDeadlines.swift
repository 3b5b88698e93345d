import HookbusCore
import Synchronization

/// The timeouts of the hook deliveries in flight, with no timer of their own.
///
/// A timer per delivery costs a wake-up of the timer thread each time it is
/// set; at thousands of deliveries a second that was a large part of the cost
/// of a delivery. Instead every attempt files its deadline here, the hook's
/// outcome settles it, and the dispatcher's `sweep` (every `sweepInterval`)
/// times out the overdue ones. A timeout fires up to one interval late.
final class HookDeadlines: Sendable {
    private struct Entry {
        var deadline: ContinuousClock.Instant
        var timeout: Duration
        var subscriber: String
        /// The outcome, once settled, if nobody waits for it yet.
        var outcome: AttemptResult?
        var waiter: CheckedContinuation<AttemptResult, Never>?
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        var next = 0
    }

    private let state = Mutex(State())

    /// Files an attempt of `subscriber` that may take `timeout` from now.
    func open(subscriber: String, timeout: Duration, now: ContinuousClock.Instant = .now) -> Int {
        state.withLock { state in
            defer { state.next &+= 1 }
            state.entries[state.next] = Entry(deadline: now + timeout, timeout: timeout, subscriber: subscriber)
            return state.next
        }
    }

    /// Ends the attempt `id` with `outcome`; the first outcome wins.
    func settle(_ id: Int, _ outcome: AttemptResult) {
        let waiter = state.withLock { state -> CheckedContinuation<AttemptResult, Never>? in
            guard var entry = state.entries[id], entry.outcome == nil else { return nil }
            if let waiter = entry.waiter {
                state.entries.removeValue(forKey: id)
                return waiter
            }
            entry.outcome = outcome
            state.entries[id] = entry
            return nil
        }
        waiter?.resume(returning: outcome)
    }

    /// Waits for the outcome of `id`: the hook's, a timeout's, or a
    /// cancellation's (if the waiting task is cancelled).
    func outcome(_ id: Int) async -> AttemptResult {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> AttemptResult? in
                    guard var entry = state.entries[id] else { return .failed("delivery \(id) was already settled") }
                    if let outcome = entry.outcome {
                        state.entries.removeValue(forKey: id)
                        return outcome
                    }
                    entry.waiter = continuation
                    state.entries[id] = entry
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let subscriber = state.withLock { $0.entries[id]?.subscriber } ?? "?"
            settle(id, .failed("hook \(subscriber) was cancelled"))
        }
    }

    /// Attempts filed and not yet waited out.
    var pending: Int { state.withLock { $0.entries.count } }

    /// How often the dispatcher calls `sweep`.
    static let sweepInterval: Duration = .milliseconds(50)

    /// Times out every attempt whose deadline has passed.
    func sweep(now: ContinuousClock.Instant = .now) {
        let overdue = state.withLock { state -> [(Int, String, Duration)] in
            state.entries.compactMap { id, entry in
                entry.outcome == nil && entry.deadline <= now ? (id, entry.subscriber, entry.timeout) : nil
            }
        }
        for (id, subscriber, timeout) in overdue {
            settle(id, .failed("hook \(subscriber) timed out after \(timeout.spelled)"))
        }
    }
}
