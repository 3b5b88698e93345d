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
        /// Moves on by the time ingest is pressed, up to `latest` (an
        /// in-process hook, whose thread may not run meanwhile: `DispatchExecutor`).
        var patient: Bool
        var latest: ContinuousClock.Instant
        var expire: @Sendable () -> Void
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        var next = 0
        var lastSweep: ContinuousClock.Instant?
    }

    /// A patient deadline moves on by at most this many times its timeout.
    static let patienceLimit = 4

    private let state = Mutex(State())

    /// How often the dispatcher calls `sweep`.
    static let sweepInterval: Duration = .milliseconds(50)

    /// Files a deadline `timeout` from `now`; `expire` runs (once, from a
    /// sweep) if it is not taken back by then. A `patient` deadline moves on
    /// by the time between sweeps that find ingest pressed, so the timeout
    /// counts calm time only, up to `patienceLimit` times the timeout in all.
    func watch(
        _ timeout: Duration, now: ContinuousClock.Instant = .now, patient: Bool = false,
        expire: @escaping @Sendable () -> Void
    ) -> Int {
        state.withLock { state in
            defer { state.next &+= 1 }
            state.entries[state.next] = Entry(
                deadline: now + timeout, patient: patient, latest: now + timeout * Self.patienceLimit, expire: expire)
            return state.next
        }
    }

    /// Takes a deadline back: the attempt ended in time (or was timed out already).
    func end(_ id: Int) {
        _ = state.withLock { $0.entries.removeValue(forKey: id) }
    }

    /// Deadlines filed and not taken back or expired.
    var pending: Int { state.withLock { $0.entries.count } }

    /// Runs the action of every deadline that has passed; while `pressed`
    /// (ingest is, and hooks give way to it), patient deadlines first move on
    /// by the time since the last sweep.
    func sweep(now: ContinuousClock.Instant = .now, pressed: Bool = false) {
        let overdue = state.withLock { state -> [@Sendable () -> Void] in
            let elapsed = state.lastSweep.map { now - $0 } ?? .zero
            state.lastSweep = now
            if pressed && elapsed > .zero {
                for (id, entry) in state.entries where entry.patient {
                    state.entries[id]?.deadline = min(entry.deadline + elapsed, entry.latest)
                }
            }
            let ids = state.entries.compactMap { $0.value.deadline <= now ? $0.key : nil }
            return ids.compactMap { state.entries.removeValue(forKey: $0)?.expire }
        }
        for expire in overdue { expire() }
    }
}
