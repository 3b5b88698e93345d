import Foundation
import Testing

/// One subscriber's trouble is its own: a failing subscriber never delays a
/// healthy one (DESIGN.md, "Delivery").
@Suite("Dispatch: isolation between subscribers")
struct DispatchIsolationTests {
    static let events = 20

    @Test("a failing exec subscriber waiting on a long backoff does not delay a healthy one")
    func failingDoesNotDelayHealthy() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // The failing one retries after ten minutes: the test is long over by then.
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "failing"
            types = ["iso.*"]
            exec = ["{examples}/fail.sh"]
            max_attempts = 5
            backoff_initial = "10m"
            backoff_max = "10m"
            env = { FAIL_LOG = "{dir}/failing.log" }

            [[subscribers]]
            name = "healthy"
            types = ["iso.*"]
            exec = ["{examples}/record.sh"]
            env = { RECORD_DIR = "{dir}/rec" }
            """)
        let seqs = try await bed.publish((0..<Self.events).map { EventLine.make(type: "iso.event", source: "iso", id: "i\($0)") })
        try await bed.waitUntil("healthy got all \(Self.events) events") { bed.lines("rec/healthy.log").count >= Self.events }
        try await bed.waitUntil("failing's first attempt recorded as a retry") { try !bed.ledger().retries("failing").isEmpty }

        #expect(bed.lines("rec/healthy.log").map { Int64($0.split(separator: " ")[0]) } == seqs,
                "healthy got every event once, in order")
        // Meanwhile the failing one is still on its first event, waiting: one
        // attempt made, nothing dead-lettered.
        let ledger = try bed.ledger()
        let retries = try ledger.retries("failing")
        #expect(retries.count == 1 && retries.first?.seq == seqs[0] && retries.first?.attempt == 1, "\(retries)")
        #expect(try ledger.deadLetters("failing").isEmpty)
        #expect(bed.lines("failing.log") == ["\(seqs[0]) 1"])
        let stats = try bed.stats()
        let failing = try #require(stats["failing"])
        let healthy = try #require(stats["healthy"])
        #expect(failing.retrying == 1 && failing.failedAttempts == 1 && failing.delivered == 0 && failing.dead == 0, "\(failing)")
        #expect(failing.lag > 0, "the failing subscriber is behind: \(failing)")
        #expect(healthy.delivered == Self.events && healthy.failedAttempts == 0, "\(healthy)")
    }

    @Test("publishing goes on while every subscriber is stuck: an exec that hangs, a pipe that never answers, a hook that fails")
    func ingestNeverWaitsForDispatch() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "hangs"
            types = ["*"]
            exec = ["{examples}/hang.sh"]
            timeout = "10m"
            env = { HANG_PIDFILE = "{dir}/hang.pids" }

            [[subscribers]]
            name = "silent"
            types = ["*"]
            pipe = ["python3", "{examples}/pipe_recorder.py"]
            timeout = "10m"
            env = { PIPE_LOG = "{dir}/silent.log", PIPE_STALL_AFTER = "1", PIPE_STALL_MARK = "{dir}/silent.stalled" }

            [[subscribers]]
            name = "broken-hook"
            hook = "hosts-file"
            types = ["*"]
            backoff_initial = "10m"
            backoff_max = "10m"
            options = { path = "{dir}/missing/hosts", domain = "fleet.example" }
            """)
        // Every subscriber is stuck on its first event...
        let first = try await bed.publish(EventLine.make(type: "stuck.first", source: "stuck", id: "s0"))
        try await bed.waitUntil("all three stuck on seq \(first) or before") {
            let retrying = try !bed.ledger().retries("broken-hook").isEmpty
            return bed.lines("hang.pids").count == 1 && bed.lines("silent.stalled").count == 1 && retrying
        }
        // ... and 2,000 more events are still acknowledged, each stored.
        let seqs = try await bed.publish((1...2000).map { EventLine.make(type: "stuck.more", source: "stuck", id: "s\($0)") })
        #expect(seqs.count == 2000 && Set(seqs).count == 2000 && seqs.allSatisfy { $0 > first })
        let stats = try bed.stats()
        for name in ["hangs", "silent", "broken-hook"] {
            let entry = try #require(stats[name])
            #expect(entry.delivered <= 1 && entry.lag >= 2000, "\(name) is stuck behind: \(entry)")
        }
        // SIGTERM: stuck deliveries get the shutdown grace, then are cancelled; the
        // hung script's whole process group goes with them, and the broker exits 0.
        let pids = bed.lines("hang.pids").first?.split(separator: " ").compactMap { Int32($0) } ?? []
        #expect(try await bed.broker.stop() == 0)
        try await bed.waitUntil("the hung script and its child are gone") {
            pids.allSatisfy { DispatchProcess.status($0).map { $0.state == "Z" } ?? true }
        }
    }

    @Test("a hook that keeps failing (its directory is missing) does not stop the other hooks; it is retried and dead-lettered under its own name")
    func failingHookDoesNotStopOthers() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "hosts-broken"
            hook = "hosts-file"
            options = { path = "{dir}/missing/hosts", domain = "fleet.example" }

            [[subscribers]]
            name = "hosts"
            hook = "hosts-file"
            options = { path = "{dir}/hosts", domain = "fleet.example" }

            [[subscribers]]
            name = "sd"
            hook = "prometheus-sd"
            options = { path = "{dir}/sd.json" }
            """)
        let seq = try await bed.publish(EventLine.make(
            type: "client.added", source: "fleet", id: "a1", data: #"{"ip":"10.1.0.1","hostname":"web","fleet":"eu"}"#))
        try await bed.waitUntil("hosts and sd settled through \(seq)") {
            try bed.ledger().settled("hosts", through: seq) && bed.ledger().settled("sd", through: seq)
        }
        #expect(bed.contents("hosts") == "10.1.0.1 web.eu.fleet.example\n")
        #expect(bed.contents("sd.json") == #"[{"targets":["10.1.0.1:9100"],"labels":{"fleet":"eu","hostname":"web"}}]"# + "\n")

        // The broken one fails on hookbus.started and on the event, three attempts each.
        try await bed.waitUntil("hosts-broken dead-lettered the client event") {
            try bed.ledger().deadLetters("hosts-broken").contains { $0.seq == seq }
        }
        let dead = try bed.ledger().deadLetters("hosts-broken")
        #expect(Set(dead.map(\.eventType)) == ["hookbus.started", "client.added"], "\(dead.map(\.eventType))")
        for letter in dead {
            #expect(letter.attempts == 3 && letter.reason == "max_attempts")
            #expect(letter.lastError.contains("hook hosts-broken threw") && letter.lastError.contains(scratch.path("missing/hosts")),
                    "\(letter.lastError)")
        }
        let stats = try bed.stats()
        #expect(stats["hosts"]?.failedAttempts == 0 && stats["sd"]?.failedAttempts == 0, "\(stats.values.map(\.description))")
        #expect(stats["hosts-broken"]?.dead == 2 && stats["hosts-broken"]?.failedAttempts == 6, "\(stats["hosts-broken"]?.description ?? "")")
    }
}
