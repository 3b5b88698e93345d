import Foundation
import Testing

/// In-process hooks give way to a pressed ingest: during a burst from
/// `hookbus bench` (4 connections × 64 in flight, so commits of dozens of
/// events), the hooks run on the broker's `SCHED_IDLE` threads; every event is
/// still delivered to every hook, and once the burst is over the hooks run at
/// the default priority again.
@Suite("Dispatch: hooks give way to a pressed ingest")
struct DispatchGiveWayTests {
    /// One thread of the broker, as /proc shows it.
    struct BrokerThread {
        var name: String
        /// Field 41 of /proc/PID/task/TID/stat: 0 SCHED_OTHER, 5 SCHED_IDLE.
        var policy: Int
        /// Nanoseconds on a CPU (/proc/PID/task/TID/schedstat, first field).
        var ranNanos: UInt64
    }

    static func threads(of pid: Int32) throws -> [BrokerThread] {
        let tasks = "/proc/\(pid)/task"
        return try FileManager.default.contentsOfDirectory(atPath: tasks).compactMap { tid in
            guard let comm = try? String(contentsOfFile: "\(tasks)/\(tid)/comm", encoding: .utf8),
                  let fields = DispatchProcess.statFields("\(tasks)/\(tid)/stat"),
                  let schedstat = try? String(contentsOfFile: "\(tasks)/\(tid)/schedstat", encoding: .utf8),
                  fields.count > 38, let policy = Int(fields[38]),
                  let ran = schedstat.split(separator: " ").first.flatMap({ UInt64($0) })
            else { return nil }
            return BrokerThread(name: comm.trimmingCharacters(in: .whitespacesAndNewlines), policy: policy, ranNanos: ran)
        }
    }

    @Test("during a burst the hooks run on SCHED_IDLE threads, deliver every event, and run at the default priority after it")
    func burstGivesWayAndLosesNothing() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "probe-a"
            types = ["bench.*"]
            hook = "latency-probe"
            options = { report = "{dir}/a.json" }

            [[subscribers]]
            name = "probe-b"
            types = ["bench.*"]
            hook = "latency-probe"
            options = { report = "{dir}/b.json" }
            """)
        let pid = bed.broker.pid
        let events = 20_000
        let run = try await bed.broker.hookbus([
            "bench", "load", "--connections", "4", "--window", "64", "--count", "\(events)", "--json",
        ])
        #expect(run.status == 0 && !run.signaled, "\(run)")
        try await bed.waitUntil("both hooks delivered all \(events) events", timeout: .seconds(120)) {
            let stats = try bed.stats()
            return stats["probe-a"]?.delivered == events && stats["probe-b"]?.delivered == events
        }

        let threads = try Self.threads(of: pid)
        let yielding = threads.filter { $0.name.hasPrefix("hookbus-yield-") }
        let normal = threads.filter { $0.name.hasPrefix("hookbus-disp-") }
        #expect(!yielding.isEmpty && !normal.isEmpty, "the broker's threads: \(threads.map(\.name))")
        #expect(yielding.allSatisfy { $0.policy == 5 }, "the yielding threads are SCHED_IDLE: \(yielding)")
        #expect(normal.allSatisfy { $0.policy == 0 }, "the others SCHED_OTHER: \(normal)")
        #expect(yielding.contains { $0.ranNanos > 0 }, "the hooks ran on the yielding threads during the burst: \(yielding)")

        // After the burst: one more event, delivered by a thread at the default priority.
        // First the yielding threads finish what they were doing and sleep (nothing
        // wakes them while ingest is calm): their CPU time stops moving.
        func yieldingRan() throws -> UInt64 {
            try Self.threads(of: pid).filter { $0.name.hasPrefix("hookbus-yield-") }.map(\.ranNanos).reduce(0, +)
        }
        var before = try yieldingRan()
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            try await Task.sleep(for: .milliseconds(200))
            let now = try yieldingRan()
            if now == before { break }
            before = now
            guard ContinuousClock.now < deadline else { throw HarnessError("the yielding threads never went idle") }
        }
        _ = try await bed.publish(EventLine.make(type: "bench.after", source: "after", id: "a1", data: #"{"n":1}"#))
        try await bed.waitUntil("both hooks delivered the event after the burst") {
            let stats = try bed.stats()
            return stats["probe-a"]?.delivered == events + 1 && stats["probe-b"]?.delivered == events + 1
        }
        #expect(try yieldingRan() == before, "no work went to the yielding threads once the burst was over")
    }
}
