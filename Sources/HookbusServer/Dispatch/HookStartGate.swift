import HookbusCore
import Synchronization

/// Makes the hooks woken by one event start it in priority, then registration
/// order (the sequential model of the fleet manager), while each hook stays
/// its own subscriber.
///
/// A hook's first attempt at `seq` waits until every higher-ranked hook that
/// takes the event's type has entered its `handle` for that `seq`, has passed
/// it, or cannot take it now because its window is full of earlier work (a slow, stuck or
/// retrying hook never holds the others back). The wait is also bounded by
/// `maxWait`, so no combination of states can stall a hook for long.
final class HookStartGate: Sendable {
    struct Lane: Sendable {
        var types: [TypeFilter]
        /// Highest seq whose first attempt entered `handle`, or that the hook passed.
        var position: Int64
        /// Highest seq whose first attempt was launched (maybe not yet entered).
        var launched: Int64 = 0
        var full = false
    }

    private struct Waiter {
        var seq: Int64
        var rank: Int
        var type: String
        var since: ContinuousClock.Instant
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var lanes: [Lane] = []
        var waiters: [Int: Waiter] = [:]
        var nextWaiter = 0
        /// Waiters let go before they had registered: they must not wait.
        var released = Set<Int>()
    }

    private let state = Mutex(State())
    static let maxWait: Duration = .seconds(1)

    /// Adds a hook in rank order; returns its rank.
    func add(types: [TypeFilter], position: Int64) -> Int {
        state.withLock { state in
            state.lanes.append(Lane(types: types, position: position))
            return state.lanes.count - 1
        }
    }

    /// Waits for this hook's turn to start the first attempt at `seq`.
    /// Returns true if it had to wait.
    @discardableResult
    func waitTurn(seq: Int64, rank: Int, type: String) async -> Bool {
        let id = state.withLock { state -> Int? in
            guard !Self.ready(state.lanes, seq: seq, rank: rank, type: type) else { return nil }
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        guard let id else { return false }
        // No timer of its own: `sweep` (every `Deadlines.sweepInterval`, from the dispatcher)
        // lets go of waiters older than `maxWait`; cancellation lets go at once.
        let since = ContinuousClock.now
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.released.remove(id) != nil { return true }
                    if Self.ready(state.lanes, seq: seq, rank: rank, type: type) { return true }
                    state.waiters[id] = Waiter(seq: seq, rank: rank, type: type, since: since, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.release(id)
        }
        state.withLock { _ = $0.released.remove(id) }
        return true
    }

    /// Whether the hook of `rank` may start its first attempt at `seq` now:
    /// what `waitTurn` waits for (tests check it at every start).
    func allowsStart(seq: Int64, rank: Int, type: String) -> Bool {
        state.withLock { Self.ready($0.lanes, seq: seq, rank: rank, type: type) }
    }

    /// Waits registered and not let go yet.
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// Lets go of every waiter that has waited `maxWait` or longer.
    func sweep(now: ContinuousClock.Instant = .now) {
        let overdue = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var out: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters where now - waiter.since >= Self.maxWait {
                out.append(waiter.continuation)
                state.waiters.removeValue(forKey: id)
            }
            return out
        }
        for continuation in overdue { continuation.resume() }
    }

    /// The runner of `rank` launched the first attempt at `seq`.
    func launched(rank: Int, seq: Int64) {
        update { $0[rank].launched = max($0[rank].launched, seq) }
    }

    /// A run of the hook of `rank` ended before it started `seq` and the
    /// seqs after it: they count as not launched (a hook that stopped at a
    /// failure must not hold back the hooks after it on events it will not
    /// start until its retry).
    func unlaunched(rank: Int, from seq: Int64) {
        update { $0[rank].launched = min($0[rank].launched, seq - 1) }
    }

    /// The hook of `rank` is about to call `handle` for `seq` (first attempt).
    func entered(rank: Int, seq: Int64) {
        update { $0[rank].position = max($0[rank].position, seq) }
    }

    /// The hook's window filled up or freed; `cursor` is where it has settled.
    func window(rank: Int, full: Bool, cursor: Int64) {
        update {
            $0[rank].full = full
            $0[rank].position = max($0[rank].position, cursor)
        }
    }

    private func update(_ change: (inout [Lane]) -> Void) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            change(&state.lanes)
            var out: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters where Self.ready(state.lanes, seq: waiter.seq, rank: waiter.rank, type: waiter.type) {
                out.append(waiter.continuation)
                state.waiters.removeValue(forKey: id)
            }
            return out
        }
        for continuation in ready { continuation.resume() }
    }

    private func release(_ id: Int) {
        let waiter = state.withLock { state -> Waiter? in
            guard let waiter = state.waiters.removeValue(forKey: id) else {
                state.released.insert(id)
                return nil
            }
            return waiter
        }
        waiter?.continuation.resume()
    }

    private static func ready(_ lanes: [Lane], seq: Int64, rank: Int, type: String) -> Bool {
        for lane in lanes[..<rank] where lane.types.matches(type) && lane.position < seq {
            // Not there yet: wait, unless its window is full of earlier work.
            if !lane.full || lane.launched >= seq { return false }
        }
        return true
    }
}
