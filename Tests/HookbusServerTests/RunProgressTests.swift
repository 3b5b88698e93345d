import HookbusCore
@testable import HookbusServer
import Testing

/// What a run of hook deliveries has delivered, settled by the run's task, a
/// deadline or cancellation: the first to end a delivery wins, and a deadline
/// that fires after its delivery was recorded changes nothing.
@Suite("RunProgress: results of a run of hook deliveries")
struct RunProgressTests {
    static let delivered = RunResult(result: .delivered, micros: 5)
    static let late = RunResult(result: .failed("timed out"), micros: 100)

    @Test("a deadline that fires after its delivery was recorded neither ends the run nor adds a result")
    func lateDeadlineChangesNothing() async {
        let progress = RunProgress()
        #expect(progress.starting(0))
        #expect(progress.record(0, Self.delivered))
        // The sweep took the deadline out before the delivery ended, and runs it now.
        progress.timedOut(0, Self.late)
        #expect(progress.starting(1))
        #expect(progress.record(1, Self.delivered), "the run went on: its next delivery is recorded")
        progress.finish()
        await progress.wait { _ in RunResult(result: .failed("cancelled"), micros: 0) }
        #expect(progress.results == [Self.delivered, Self.delivered])
    }

    @Test("a deadline that fires during its delivery ends the run; the delivery's own late result is dropped")
    func deadlineEndsTheRun() async {
        let progress = RunProgress()
        #expect(progress.starting(0))
        #expect(progress.record(0, Self.delivered))
        #expect(progress.starting(1))
        progress.timedOut(1, Self.late)
        await progress.wait { _ in RunResult(result: .failed("cancelled"), micros: 0) }
        #expect(!progress.record(1, Self.delivered), "the time-out stands")
        #expect(progress.results == [Self.delivered, Self.late])
    }

    @Test("the first end of a delivery wins, whether it comes before or after the wait starts")
    func firstEndWins() async {
        let early = RunProgress()
        #expect(early.starting(0))
        #expect(early.record(0, Self.delivered))
        early.finish()
        early.timedOut(0, Self.late)
        await early.wait { _ in RunResult(result: .failed("cancelled"), micros: 0) }
        #expect(early.results == [Self.delivered])

        let later = RunProgress()
        #expect(later.starting(0))
        await withDiscardingTaskGroup { group in
            group.addTask { await later.wait { _ in RunResult(result: .failed("cancelled"), micros: 0) } }
            group.addTask {
                _ = later.record(0, RunResult(result: .rejected("no"), micros: 1))
                later.finish()
            }
        }
        #expect(later.results == [RunResult(result: .rejected("no"), micros: 1)])
    }

    @Test("a deadline that passes, run by the sweep, ends the delivery; the hook's late answer changes nothing")
    func timeoutThroughSweep() async {
        let deadlines = Deadlines()
        let progress = RunProgress()
        let start = ContinuousClock.now
        #expect(progress.starting(0))
        _ = deadlines.watch(.milliseconds(10), now: start) { progress.timedOut(0, Self.late) }
        deadlines.sweep(now: start + .milliseconds(10))
        #expect(!progress.record(0, Self.delivered))
        await progress.wait { _ in RunResult(result: .failed("cancelled"), micros: 0) }
        #expect(progress.results == [Self.late])
    }

    @Test("cancelled between deliveries, the run adds no result for a delivery that never started")
    func cancelledBetweenDeliveries() async {
        let progress = RunProgress()
        #expect(progress.starting(0))
        #expect(progress.record(0, Self.delivered))
        let waiting = Task { await progress.wait { _ in RunResult(result: .failed("cancelled"), micros: 0) } }
        waiting.cancel()
        await waiting.value
        #expect(progress.results == [Self.delivered])
        #expect(!progress.starting(1), "a cancelled run starts nothing more")

        let during = RunProgress()
        #expect(during.starting(0))
        let cancelled = Task { await during.wait { _ in RunResult(result: .failed("cancelled"), micros: 0) } }
        cancelled.cancel()
        await cancelled.value
        #expect(during.results == [RunResult(result: .failed("cancelled"), micros: 0)], "the delivery under way is cancelled")
    }
}
