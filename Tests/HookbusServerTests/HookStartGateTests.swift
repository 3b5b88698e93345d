import HookbusCore
@testable import HookbusServer
import Synchronization
import Testing

/// The start gate that makes the hooks woken by one event start in priority
/// order: a lower-ranked hook waits for the higher ones to enter, but never
/// longer than `maxWait` (swept by the dispatcher) and never past cancellation.
@Suite("HookStartGate: order, bound and cancellation")
struct HookStartGateTests {
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .sequentiallyConsistent) }
        var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
    }

    @Test("the second hook starts seq 5 only once the first has entered it")
    func waitsForHigherRank() async throws {
        let gate = HookStartGate()
        let first = gate.add(types: [.all], position: 0)
        let second = gate.add(types: [.all], position: 0)
        gate.launched(rank: first, seq: 5)
        let passed = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await gate.waitTurn(seq: 5, rank: second, type: "client.added")
                passed.set()
            }
            try await Task.sleep(for: .milliseconds(50))
            #expect(!passed.isSet, "the second hook must wait for the first")
            gate.entered(rank: first, seq: 5)
            try await eventually { passed.isSet }
            try await group.waitForAll()
        }
        // A type the first hook does not take needs no wait.
        let other = HookStartGate()
        _ = other.add(types: [.prefix("server.")], position: 0)
        let rank = other.add(types: [.all], position: 0)
        await other.waitTurn(seq: 9, rank: rank, type: "client.added")
    }

    @Test("a run that stops before seq 8 takes its launch back: the next hook, held at 8, goes on")
    func unlaunchedRunLetsTheNextHookGo() async throws {
        let gate = HookStartGate()
        let first = gate.add(types: [.all], position: 0)
        let second = gate.add(types: [.all], position: 0)
        // The first hook's run took 6...10 and holds its (single) place.
        for seq in Int64(6)...10 { gate.launched(rank: first, seq: seq) }
        gate.window(rank: first, full: true, cursor: 5)
        gate.entered(rank: first, seq: 6)
        gate.entered(rank: first, seq: 7)
        let passed = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await gate.waitTurn(seq: 8, rank: second, type: "client.added")
                passed.set()
            }
            try await Task.sleep(for: .milliseconds(50))
            #expect(!passed.isSet, "seq 8 is launched by the first hook: the second waits for it")
            // Seq 7 failed: the run ends, 8...10 go back unstarted behind its retry.
            gate.unlaunched(rank: first, from: 8)
            try await eventually { passed.isSet }
            try await group.waitForAll()
        }
    }

    @Test("a wait ends once maxWait has passed, at the next sweep")
    func sweepBoundsTheWait() async throws {
        let gate = HookStartGate()
        let first = gate.add(types: [.all], position: 0)
        let second = gate.add(types: [.all], position: 0)
        gate.launched(rank: first, seq: 3)
        let passed = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await gate.waitTurn(seq: 3, rank: second, type: "t")
                passed.set()
            }
            try await eventually { gate.waiting == 1 }
            gate.sweep()
            #expect(!passed.isSet, "not yet overdue")
            gate.sweep(now: .now + HookStartGate.maxWait)
            try await eventually { passed.isSet }
            try await group.waitForAll()
        }
    }

    @Test("a cancelled wait ends at once")
    func cancellationEndsTheWait() async throws {
        let gate = HookStartGate()
        let first = gate.add(types: [.all], position: 0)
        let second = gate.add(types: [.all], position: 0)
        gate.launched(rank: first, seq: 7)
        let passed = Flag()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await gate.waitTurn(seq: 7, rank: second, type: "t")
                passed.set()
            }
            try? await Task.sleep(for: .milliseconds(50))
            #expect(!passed.isSet)
            group.cancelAll()
            await group.waitForAll()
        }
        #expect(passed.isSet)
    }
}
