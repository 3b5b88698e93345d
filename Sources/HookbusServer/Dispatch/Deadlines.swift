import HookbusCore
import Synchronization

/// The timeouts of the deliveries in flight, with no timer of their own.
///
/// A timer per delivery costs a wake-up of the timer thread each time it is
/// set; at thousands of deliveries a second that was a large part of the cost
/// of a delivery. Instead every attempt files its deadline here with what to
/// do when it passes, takes it back when it ends, and the dispatcher's `sweep`
/// (every `sweepInterval`) runs the actions of the overdue ones. A timeout
/// fires up to one interval late (plus scheduling delay). Socket subscribers'
/// deliveries run in the listener's tasks but are timed out here too: the
/// dispatcher must run as long as the listener does (`Broker` stops the
/// listener first).
final class Deadlines: Sendable {
    private struct Entry {
        var deadline: ContinuousClock.Instant
        /// Waits while ingest is pressed (an in-process hook, whose thread
        /// may not have run meanwhile: `DispatchExecutor`).
        var patient: Bool
        var expire: @Sendable () -> Void
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        var next = 0
    }

    private let state = Mutex(State())

    /// How often the dispatcher calls `sweep`.
    static let sweepInterval: Duration = .milliseconds(50)

    /// Files a deadline `timeout` from `now`; `expire` runs (once, from a
    /// sweep) if it is not taken back by then. A `patient` deadline that has
    /// passed waits while ingest is pressed, and runs at the first sweep after.
    func watch(
        _ timeout: Duration, now: ContinuousClock.Instant = .now, patient: Bool = false,
        expire: @escaping @Sendable () -> Void
    ) -> Int {
        state.withLock { state in
            defer { state.next &+= 1 }
            state.entries[state.next] = Entry(deadline: now + timeout, patient: patient, expire: expire)
            return state.next
        }
    }

    /// Takes a deadline back: the attempt ended in time (or was timed out already).
    func end(_ id: Int) {
        _ = state.withLock { $0.entries.removeValue(forKey: id) }
    }

    /// Deadlines filed and not taken back or expired.
    var pending: Int { state.withLock { $0.entries.count } }

    /// Runs the action of every deadline that has passed (but patient ones while `pressed`).
    func sweep(now: ContinuousClock.Instant = .now, pressed: Bool = IngestLoad.pressed(was: true)) {
        let overdue = state.withLock { state -> [@Sendable () -> Void] in
            let ids = state.entries.compactMap { $0.value.deadline <= now && !($0.value.patient && pressed) ? $0.key : nil }
            return ids.compactMap { state.entries.removeValue(forKey: $0)?.expire }
        }
        for expire in overdue { expire() }
    }
}
