import HookbusCore
@testable import HookbusServer
import Synchronization
import Testing

/// Delivery timeouts without a timer each: a deadline is filed and taken back,
/// the dispatcher's sweep runs the overdue ones (what a time-out does to a
/// delivery is in RunProgressTests).
@Suite("Deadlines: sweep timeout")
struct DeadlinesTests {
    final class Count: Sendable {
        private let value = Atomic<Int>(0)
        func add() { value.add(1, ordering: .sequentiallyConsistent) }
        var current: Int { value.load(ordering: .sequentiallyConsistent) }
    }

    @Test("a sweep runs only the deadlines that have passed and were not taken back, once each")
    func sweep() {
        let deadlines = Deadlines()
        let start = ContinuousClock.now
        let short = Count(), ended = Count(), long = Count()
        _ = deadlines.watch(.milliseconds(100), now: start) { short.add() }
        let taken = deadlines.watch(.milliseconds(100), now: start) { ended.add() }
        _ = deadlines.watch(.seconds(30), now: start) { long.add() }
        deadlines.sweep(now: start + .milliseconds(99))
        #expect(short.current == 0)
        deadlines.end(taken)
        deadlines.sweep(now: start + .milliseconds(100))
        deadlines.sweep(now: start + .milliseconds(200))
        #expect(short.current == 1)
        #expect(ended.current == 0)
        #expect(long.current == 0)
        #expect(deadlines.pending == 1)
    }
}

@Suite("Deadlines: hook deadlines count calm time only")
struct PatientDeadlinesTests {
    @Test("a patient deadline moves on by the time ingest is pressed; others do not")
    func patientMovesOnWhilePressed() {
        let deadlines = Deadlines()
        let fired = Mutex<[String]>([])
        let start = ContinuousClock.now
        _ = deadlines.watch(.milliseconds(10), now: start, patient: true) { fired.withLock { $0.append("hook") } }
        _ = deadlines.watch(.milliseconds(10), now: start) { fired.withLock { $0.append("pipe") } }
        deadlines.sweep(now: start, pressed: false)
        // Pressed for 5 ms: the hook's deadline is now 15 ms from the start.
        deadlines.sweep(now: start + .milliseconds(5), pressed: true)
        deadlines.sweep(now: start + .milliseconds(12), pressed: false)
        #expect(fired.withLock { $0 } == ["pipe"])
        deadlines.sweep(now: start + .milliseconds(16), pressed: false)
        #expect(fired.withLock { $0 } == ["pipe", "hook"])
        #expect(deadlines.pending == 0)
    }

    @Test("a patient deadline moves on by at most patienceLimit times its timeout")
    func patienceHasALimit() {
        let deadlines = Deadlines()
        let fired = Mutex(0)
        let start = ContinuousClock.now
        _ = deadlines.watch(.milliseconds(10), now: start, patient: true) { fired.withLock { $0 += 1 } }
        deadlines.sweep(now: start, pressed: true)
        deadlines.sweep(now: start + .milliseconds(30), pressed: true)
        #expect(fired.withLock { $0 } == 0, "moved on to 40 ms")
        deadlines.sweep(now: start + .milliseconds(10 * Deadlines.patienceLimit), pressed: true)
        #expect(fired.withLock { $0 } == 1, "at the limit it runs, pressed or not")
    }
}
