import HookbusCore
@testable import HookbusServer
import Synchronization
import Testing

/// Delivery timeouts without a timer each: a deadline is filed and taken back,
/// the dispatcher's sweep runs the overdue ones; an outcome is settled once.
@Suite("Deadlines and OutcomeSlot: sweep timeout, first outcome wins, cancellation")
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

    @Test("the first outcome wins, whether it comes before or after the wait starts")
    func firstOutcomeWins() async {
        let early = OutcomeSlot()
        early.settle(.delivered)
        early.settle(.failed("late"))
        #expect(await early.outcome(cancelled: .failed("cancelled")) == .delivered)
        let later = OutcomeSlot()
        await withDiscardingTaskGroup { group in
            group.addTask { #expect(await later.outcome(cancelled: .failed("cancelled")) == .rejected("no")) }
            group.addTask { later.settle(.rejected("no")) }
        }
    }

    @Test("a deadline that passes settles the slot; the subscriber's late answer changes nothing")
    func timeoutThroughSweep() async {
        let deadlines = Deadlines()
        let slot = OutcomeSlot()
        let start = ContinuousClock.now
        _ = deadlines.watch(.milliseconds(10), now: start) { slot.settle(.failed("timed out")) }
        deadlines.sweep(now: start + .milliseconds(10))
        slot.settle(.delivered)
        #expect(await slot.outcome(cancelled: .failed("cancelled")) == .failed("timed out"))
    }

    @Test("cancelling the waiting task ends the wait with the cancelled outcome")
    func cancellation() async {
        let slot = OutcomeSlot()
        let outcome = await withTaskGroup(of: AttemptResult.self) { group in
            group.addTask { await slot.outcome(cancelled: .failed("hook h was cancelled")) }
            group.cancelAll()
            return await group.next()!
        }
        #expect(outcome == .failed("hook h was cancelled"))
    }
}
