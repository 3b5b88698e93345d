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

@Suite("Deadlines: hook deadlines wait while ingest is pressed")
struct PatientDeadlinesTests {
    @Test("a patient deadline that passed waits while ingest is pressed and runs at the first sweep after; others run at once")
    func patientWaitsWhilePressed() {
        let deadlines = Deadlines()
        let fired = Mutex<[String]>([])
        let start = ContinuousClock.now
        _ = deadlines.watch(.milliseconds(10), now: start, patient: true) { fired.withLock { $0.append("hook") } }
        _ = deadlines.watch(.milliseconds(10), now: start) { fired.withLock { $0.append("pipe") } }
        deadlines.sweep(now: start + .seconds(5), pressed: true)
        #expect(fired.withLock { $0 } == ["pipe"])
        deadlines.sweep(now: start + .seconds(6), pressed: true)
        #expect(fired.withLock { $0 } == ["pipe"])
        deadlines.sweep(now: start + .seconds(7), pressed: false)
        #expect(fired.withLock { $0 } == ["pipe", "hook"])
        #expect(deadlines.pending == 0)
    }
}
