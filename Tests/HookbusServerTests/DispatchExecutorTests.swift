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
///
/// Pressure is process-wide (`IngestLoad`), so these tests run one at a time,
/// and a pump keeps it up (as a busy committer would) while one needs it.
@Suite("DispatchExecutor: dispatch gives way to a pressed ingest", .serialized)
struct DispatchExecutorTests {
    /// Where a job of the dispatch executor ran: its thread's scheduling policy and name.
    static func whereDispatchRuns() async -> (policy: Int32, name: String) {
        await withTaskExecutorPreference(DispatchExecutor.shared) {
            await Self.here()
        }
    }

    static func here() async -> (policy: Int32, name: String) {
        var name = [CChar](repeating: 0, count: 32)
        let fd = open("/proc/thread-self/comm", O_RDONLY)
        if fd >= 0 {
            _ = read(fd, &name, 31)
            close(fd)
        }
        let text = String(decoding: name.prefix { $0 != 0 && $0 != 0x0A }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (sched_getscheduler(0), text)
    }

    /// Runs `body` while commits of 500 events keep coming every 2 ms.
    static func pressed<T: Sendable>(_ body: @Sendable () async -> T) async -> T {
        await withTaskGroup(of: T?.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    IngestLoad.simulate(commits: 8, of: 500)
                    try? await Task.sleep(for: .milliseconds(2))
                }
                return nil
            }
            IngestLoad.simulate(commits: 8, of: 500)
            let result = await body()
            group.cancelAll()
            while let _ = await group.next() {}
            return result
        }
    }

    /// Waits until no commit has come for `IngestLoad.quiet`.
    static func calm() async {
        while IngestLoad.pressed(was: true) { try? await Task.sleep(for: .milliseconds(5)) }
    }

    @Test("while ingest is calm, dispatch runs on its threads at the default priority")
    func calmRunsAtDefaultPriority() async {
        await Self.calm()
        let place = await Self.whereDispatchRuns()
        #expect(place.name.hasPrefix("hookbus-disp-"), "ran on \(place.name)")
        #expect(place.policy == SCHED_OTHER)
    }

    @Test("while ingest is pressed, dispatch runs under SCHED_IDLE, and goes back once it eases")
    func pressedRunsIdle() async throws {
        // The pump could be held up longer than `quiet` on a loaded machine: look again until the deadline.
        let deadline = ContinuousClock.now + .seconds(20)
        var seen: (policy: Int32, name: String) = (-1, "")
        while ContinuousClock.now < deadline {
            seen = await Self.pressed { await Self.whereDispatchRuns() }
            if seen.policy == DispatchExecutor.schedIdle { break }
        }
        #expect(seen.policy == DispatchExecutor.schedIdle, "ran on \(seen.name) with policy \(seen.policy)")
        #expect(seen.name.hasPrefix("hookbus-yield-"))

        await Self.calm()
        let after = await Self.whereDispatchRuns()
        #expect(after.policy == SCHED_OTHER, "after the pressure: ran on \(after.name)")
    }

    @Test("every job runs, whichever set of threads takes it, while the pressure comes and goes")
    func everyJobRuns() async {
        let count = Counter()
        await withTaskExecutorPreference(DispatchExecutor.shared) {
            await withDiscardingTaskGroup { group in
                for index in 0..<2000 {
                    group.addTask {
                        if index % 100 == 0 { IngestLoad.simulate(commits: 8, of: index % 200 == 0 ? 500 : 1) }
                        await Task.yield()
                        count.value.withLock { $0 += 1 }
                    }
                }
            }
        }
        #expect(count.value.withLock { $0 } == 2000)
        await Self.calm()
    }

    @Test("an exec subscriber's process, started while dispatch gives way, runs at the default priority")
    func execChildDoesNotInheritIdle() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hookbus-executor-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("policy").path
        // Field 41 of /proc/PID/stat is the scheduling policy (sh's name has no space).
        let deliverer = ExecDeliverer(
            argv: ["/bin/sh", "-c", "cut -d' ' -f41 /proc/$$/stat > \(out)"], timeout: .seconds(30),
            environment: [:], runAs: nil, logger: Logger(label: "test"))
        let event = StoredEvent(
            seq: 1, id: "e1", source: "/test", type: "test.policy", subject: nil, time: "2026-11-23T00:00:00Z",
            receivedAtMicros: 0, producer: Producer(uid: 0, gid: 0, pid: 0),
            json: #"{"specversion":"1.0","id":"e1","source":"/test","type":"test.policy"}"#)
        let delivery = Delivery(subscriber: "policy", event: event, attempt: 1, replay: false)
        let deadline = ContinuousClock.now + .seconds(20)
        var caller: Int32 = -1
        var result: AttemptResult = .failed("not run")
        while ContinuousClock.now < deadline && caller != DispatchExecutor.schedIdle {
            (caller, result) = await Self.pressed {
                await withTaskExecutorPreference(DispatchExecutor.shared) {
                    let caller = sched_getscheduler(0)
                    return (caller, await deliverer.deliver(delivery, ticket: 0))
                }
            }
        }
        #expect(caller == DispatchExecutor.schedIdle, "the delivery started on a thread that gives way")
        #expect(result == .delivered)
        let written = try String(contentsOfFile: out, encoding: .utf8)
        #expect(written.trimmingCharacters(in: .whitespacesAndNewlines) == "\(SCHED_OTHER)", "the child's policy")
        await Self.calm()
    }
}


private final class Counter: Sendable {
    let value = Mutex(0)
}
