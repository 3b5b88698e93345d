import HookbusCore
@testable import HookbusServer
import Testing

/// Hook timeouts without a timer each: the hook's outcome settles an attempt,
/// the dispatcher's sweep times out the overdue, cancellation ends the wait.
@Suite("HookDeadlines: outcome, sweep timeout, cancellation")
struct HookDeadlinesTests {
    @Test("the hook's outcome is what the wait gets, whether it comes before or after the wait starts")
    func outcomeFirstOrLater() async {
        let deadlines = HookDeadlines()
        let early = deadlines.open(subscriber: "a", timeout: .seconds(30))
        deadlines.settle(early, .delivered)
        #expect(await deadlines.outcome(early) == .delivered)
        let late = deadlines.open(subscriber: "a", timeout: .seconds(30))
        await withDiscardingTaskGroup { group in
            group.addTask { #expect(await deadlines.outcome(late) == .rejected("no")) }
            group.addTask { deadlines.settle(late, .rejected("no")) }
        }
        // A second outcome changes nothing and nothing is left behind.
        deadlines.settle(late, .delivered)
        #expect(deadlines.pending == 0)
    }

    @Test("a sweep times out only attempts past their deadline, and the hook's late outcome is ignored")
    func sweepTimesOut() async {
        let deadlines = HookDeadlines()
        let start = ContinuousClock.now
        let short = deadlines.open(subscriber: "slow", timeout: .milliseconds(100), now: start)
        let long = deadlines.open(subscriber: "fine", timeout: .seconds(30), now: start)
        deadlines.sweep(now: start + .milliseconds(99))
        deadlines.settle(long, .delivered)
        deadlines.sweep(now: start + .milliseconds(100))
        #expect(await deadlines.outcome(short) == .failed("hook slow timed out after 100ms"))
        #expect(await deadlines.outcome(long) == .delivered)
        deadlines.settle(short, .delivered)
        #expect(deadlines.pending == 0)
    }

    @Test("cancelling the waiting task ends the wait with a failure")
    func cancellation() async {
        let deadlines = HookDeadlines()
        let id = deadlines.open(subscriber: "h", timeout: .seconds(30))
        let outcome = await withTaskGroup(of: AttemptResult.self) { group in
            group.addTask { await deadlines.outcome(id) }
            group.cancelAll()
            return await group.next()!
        }
        #expect(outcome == .failed("hook h was cancelled"))
        #expect(deadlines.pending == 0)
    }
}
