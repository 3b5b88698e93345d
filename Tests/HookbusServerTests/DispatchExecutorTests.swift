import Foundation
@testable import HookbusCore
@testable import HookbusServer
import Logging
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Dispatch's threads give way to ingest while it is pressed, and only then;
/// what they start as child processes does not inherit their low priority.
/// Each test runs its own executor with a pressure it sets itself (the
/// process-wide `IngestLoad` moves with every other suite's commits).
@Suite("DispatchExecutor: dispatch gives way to a pressed ingest", .timeLimit(.minutes(1)))
struct DispatchExecutorTests {
    /// A pressure the test sets.
    final class Switch: Sendable {
        let on = Atomic<Bool>(false)
        func set(_ value: Bool) { on.store(value, ordering: .sequentiallyConsistent) }
        var pressure: @Sendable (Bool) -> Bool { { [self] _ in on.load(ordering: .sequentiallyConsistent) } }
    }

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        func add() { value.add(1, ordering: .sequentiallyConsistent) }
        var count: Int { value.load(ordering: .sequentiallyConsistent) }
    }

    /// The scheduling policy and name of the thread this runs on.
    static func here() -> (policy: Int32, name: String) {
        let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        return (sched_getscheduler(0), name.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func whereItRuns(on executor: DispatchExecutor) async -> (policy: Int32, name: String) {
        await withTaskExecutorPreference(executor) { Self.here() }
    }

    @Test("while ingest is calm, jobs run on the threads at the default priority; while it is pressed, under SCHED_IDLE")
    func policyFollowsPressure() async {
        let pressure = Switch()
        let executor = DispatchExecutor(threads: 2, pressure: pressure.pressure)
        let calm = await Self.whereItRuns(on: executor)
        #expect(calm.policy == SCHED_OTHER && calm.name.hasPrefix("hookbus-disp-"), "calm: \(calm)")
        pressure.set(true)
        let pressed = await Self.whereItRuns(on: executor)
        #expect(pressed.policy == DispatchExecutor.schedIdle && pressed.name.hasPrefix("hookbus-yield-"), "pressed: \(pressed)")
        pressure.set(false)
        let after = await Self.whereItRuns(on: executor)
        #expect(after.policy == SCHED_OTHER, "after: \(after)")
    }

    @Test("a job queued for the SCHED_IDLE threads while they are busy runs when the pressure ends by itself")
    func pressureEndingByTimeStrandsNothing() async throws {
        let pressure = Switch()
        let executor = DispatchExecutor(threads: 2, pressure: pressure.pressure)
        // The default-priority threads have run and gone back to waiting for work.
        _ = await Self.whereItRuns(on: executor)
        try? await Task.sleep(for: .milliseconds(20))
        pressure.set(true)
        let started = Counter()
        let release = DispatchSemaphore(value: 0)
        let ran = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Released whatever happens, so the group can end.
            defer {
                release.signal()
                release.signal()
            }
            // Both SCHED_IDLE threads blocked, as if starved.
            for _ in 0..<2 {
                group.addTask(executorPreference: executor) {
                    started.add()
                    release.wait()
                }
            }
            try await eventually(within: .seconds(20)) { started.count == 2 }
            group.addTask(executorPreference: executor) { ran.add() }
            try? await Task.sleep(for: .milliseconds(20))
            #expect(ran.count == 0, "while pressed it waits for the SCHED_IDLE threads")
            // The pressure ends with nothing enqueued (no commit for 20 ms, say).
            pressure.set(false)
            try await eventually(within: .seconds(20)) { ran.count == 1 }  // it ran once the pressure ended
        }
    }

    @Test("every job runs while the pressure comes and goes")
    func everyJobRuns() async {
        let pressure = Switch()
        let executor = DispatchExecutor(threads: 2, pressure: pressure.pressure)
        let count = Counter()
        await withTaskExecutorPreference(executor) {
            await withDiscardingTaskGroup { group in
                for index in 0..<2000 {
                    group.addTask {
                        if index % 50 == 0 { pressure.set(index % 100 == 0) }
                        await Task.yield()
                        count.add()
                    }
                }
            }
        }
        pressure.set(false)  // its poller sleeps again
        #expect(count.count == 2000)
    }

    @Test("jobs enqueued from four outside threads at once, while the pressure comes and goes, all run")
    func everyJobFromOutsideRuns() async throws {
        let pressure = Switch()
        let executor = DispatchExecutor(threads: 2, pressure: pressure.pressure)
        let count = Counter()
        let perThread = 2_500
        let enqueued = DispatchSemaphore(value: 0)
        let threads = (0..<4).map { index in
            Thread {
                for job in 0..<perThread {
                    // Ends calm: no recheck of the pressure hides a strand in the end.
                    if index == 0 && job % 100 == 0 { pressure.set(job % 200 == 0 && job < perThread - 100) }
                    Task(executorPreference: executor) { count.add() }
                }
                enqueued.signal()
            }
        }
        for thread in threads { thread.start() }
        for _ in threads { enqueued.wait() }
        // A lost wake-up would leave jobs queued with every thread asleep.
        try await eventually(within: .seconds(30)) { count.count == 4 * perThread }
    }

    @Test("an exec subscriber's process, started from a thread that gives way, runs at the default priority")
    func execChildDoesNotInheritIdle() async throws {
        let pressure = Switch()
        pressure.set(true)
        defer { pressure.set(false) }  // its poller sleeps again
        let executor = DispatchExecutor(threads: 1, pressure: pressure.pressure)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hookbus-executor-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("policy").path
        // Field 41 of /proc/PID/stat is the scheduling policy (sh's name has no space).
        // It reads its stdin first: a write to a closed pipe would kill this
        // process with SIGPIPE (hookbusd ignores it; the test process does not).
        let deliverer = ExecDeliverer(
            argv: ["/bin/sh", "-c", "cat > /dev/null; cut -d' ' -f41 /proc/$$/stat > \(out)"], timeout: .seconds(30),
            environment: [:], runAs: nil, logger: Logger(label: "test"))
        let event = StoredEvent(
            seq: 1, id: "e1", source: "/test", type: "test.policy", subject: nil, time: "2026-11-23T00:00:00Z",
            receivedAtMicros: 0, producer: Producer(uid: 0, gid: 0, pid: 0),
            json: #"{"specversion":"1.0","id":"e1","source":"/test","type":"test.policy"}"#)
        let delivery = Delivery(subscriber: "policy", event: event, attempt: 1, replay: false)
        let (caller, result) = await withTaskExecutorPreference(executor) {
            (sched_getscheduler(0), await deliverer.deliver(delivery, ticket: 0))
        }
        #expect(caller == DispatchExecutor.schedIdle, "the delivery started on a thread that gives way")
        #expect(result == .delivered)
        let written = try String(contentsOfFile: out, encoding: .utf8)
        #expect(written.trimmingCharacters(in: .whitespacesAndNewlines) == "\(SCHED_OTHER)", "the child's policy")
    }

    @Test("a SCHED_IDLE thread runs jobs for at most its budget in each window, then sleeps out the window")
    func idleShare() {
        var share = DispatchExecutor.IdleShare()
        var slept: [UInt64] = []
        let window = DispatchExecutor.IdleShare.window
        let budget = DispatchExecutor.IdleShare.budget
        let t0: UInt64 = 1_000_000_000
        // Short jobs within the budget: no sleep.
        var now = t0
        for _ in 0..<4 {
            share.ran(from: now, to: now + budget / 5) { slept.append($0) }
            now += budget / 5
        }
        #expect(slept.isEmpty)
        // The job that spends the budget: sleep out the rest of the window.
        share.ran(from: now, to: now + budget / 2) { slept.append($0) }
        now += budget / 2
        #expect(slept == [t0 + window - now])
        // After the sleep a new window starts with the whole budget.
        now = t0 + window
        share.ran(from: now, to: now + budget) { slept.append($0) }
        #expect(slept.count == 1)
        // A job longer than the window: no sleep is owed past its end, and the
        // next window starts afresh.
        now += budget
        share.ran(from: now, to: now + 2 * window) { slept.append($0) }
        #expect(slept.count == 1)
        now += 2 * window
        share.ran(from: now + 10, to: now + 20) { slept.append($0) }
        #expect(slept.count == 1)
        // A thread that waited a long time for a job starts a new window.
        now += 10 * window
        share.ran(from: now, to: now + budget) { slept.append($0) }
        #expect(slept.count == 1)
    }
}
