import Foundation
import Testing

/// `{"op":"stats"}`: per-subscriber counters (protocol/PROTOCOL.md).
@Suite("Dispatch: stats")
struct DispatchStatsTests {
    static let events = 3

    @Test("stats reports delivered, failed_attempts, retrying, dead, lag and last_error for every kind of subscriber")
    func countersPerSubscriber() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "ok-exec"
            types = ["stats.*"]
            exec = ["{examples}/record.sh"]
            env = { RECORD_DIR = "{dir}/rec" }

            [[subscribers]]
            name = "flaky"
            types = ["stats.*"]
            exec = ["{examples}/flaky.sh"]
            env = { FLAKY_DIR = "{dir}/flaky", FLAKY_FAILURES = "1" }

            [[subscribers]]
            name = "failing"
            types = ["stats.*"]
            exec = ["{examples}/fail.sh"]
            max_attempts = 2

            [[subscribers]]
            name = "rejecting"
            types = ["stats.*"]
            exec = ["{examples}/fail.sh"]
            env = { FAIL_STATUS = "65" }

            [[subscribers]]
            name = "ok-pipe"
            types = ["stats.*"]
            pipe = ["python3", "{examples}/pipe_recorder.py"]
            env = { PIPE_LOG = "{dir}/pipe.log" }

            [[subscribers]]
            name = "ok-hook"
            types = ["stats.*"]
            hook = "hosts-file"
            options = { path = "{dir}/hosts", domain = "fleet.example" }
            """)
        let seqs = try await bed.publish((0..<Self.events).map { EventLine.make(type: "stats.event", source: "stats", id: "s\($0)") })
        let names = ["ok-exec", "flaky", "failing", "rejecting", "ok-pipe", "ok-hook"]
        // Settled, and the dead letters announced (each a new event every subscriber's cursor then passes).
        try await bed.waitUntil("every subscriber settled, 6 dead letters announced, no lag") {
            let ledger = try bed.ledger()
            guard try names.allSatisfy({ try ledger.settled($0, through: seqs.last!) }),
                  try ledger.eventData(type: "hookbus.dead_lettered").count == 2 * Self.events else { return false }
            return try bed.stats().values.allSatisfy { $0.lag == 0 }
        }

        let stats = try bed.stats()
        let summary = names.map { stats[$0]?.description ?? "\($0) missing" }.joined(separator: "\n")
        func check(_ name: String, kind: String, delivered: Int, failed: Int, dead: Int, error: String?) {
            guard let s = stats[name] else { Issue.record("no stats for \(name)\n\(summary)"); return }
            #expect(s.kind == kind, "\(s)")
            #expect(s.delivered == delivered && s.failedAttempts == failed && s.dead == dead, "\(s)")
            #expect(s.retrying == 0 && s.inFlight == 0 && s.lag == 0, "\(s)")
            #expect(s.cursor >= seqs.last!, "\(s)")
            if let error {
                #expect(s.lastError?.contains(error) == true, "\(s)")
            } else {
                #expect(s.lastError == nil, "\(s)")
            }
            #expect((s.p50 != nil) == (delivered > 0), "a delivery-time percentile once something was delivered: \(s)")
        }
        check("ok-exec", kind: "exec", delivered: 3, failed: 0, dead: 0, error: nil)
        check("flaky", kind: "exec", delivered: 3, failed: 3, dead: 0, error: "exit 75 (EX_TEMPFAIL)")
        check("failing", kind: "exec", delivered: 0, failed: 6, dead: 3, error: "exit 1; stderr: fail.sh: cannot deliver seq")
        check("rejecting", kind: "exec", delivered: 0, failed: 3, dead: 3, error: "exit 65 (EX_DATAERR)")
        check("ok-pipe", kind: "pipe", delivered: 3, failed: 0, dead: 0, error: nil)
        check("ok-hook", kind: "hook", delivered: 3, failed: 0, dead: 0, error: nil)

        // After a restart the counters start over, but dead letters are counted from the database.
        try await bed.broker.stop()
        try await bed.broker.restart()
        let after = try bed.stats()
        #expect(after["failing"]?.dead == 3 && after["rejecting"]?.dead == 3 && after["ok-exec"]?.dead == 0,
                "\(after.values.map(\.description))")
        #expect(after.values.allSatisfy { $0.delivered == 0 && $0.failedAttempts == 0 },
                "nothing new to deliver: hookbus.started does not match stats.*")
    }
}
