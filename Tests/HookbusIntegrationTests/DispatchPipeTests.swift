import Foundation
import Testing

/// `pipe` subscribers: one long-running process fed over stdin/stdout
/// (`tools/examples/pipe_recorder.py`), supervised by the broker.
@Suite("Dispatch: pipe subscribers")
struct DispatchPipeTests {
    /// One line of pipe_recorder.py's log: `<pid> <seq> <attempt> <type>`.
    struct Received: Equatable {
        var pid: Int32
        var seq: Int64
        var attempt: Int

        init?(_ line: String) {
            let fields = line.split(separator: " ")
            guard fields.count == 4, let pid = Int32(fields[0]), let seq = Int64(fields[1]), let attempt = Int(fields[2]) else {
                return nil
            }
            (self.pid, self.seq, self.attempt) = (pid, seq, attempt)
        }
    }

    static let events = 1000
    /// Deliveries seen before the process is killed: about a third of the way.
    static let killAfter = 300

    @Test("a pipe subscriber gets 1,000 events in order, is SIGKILLed midway, is restarted and still gets every event")
    func killedMidway() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, defaults: """
            [defaults]
            max_attempts = 10
            backoff_initial = "50ms"
            backoff_max = "200ms"
            timeout = "20s"
            """, subscribers: """
            [[subscribers]]
            name = "indexer"
            types = ["bulk.*"]
            pipe = ["python3", "{examples}/pipe_recorder.py"]
            env = { PIPE_LOG = "{dir}/indexer.log", PIPE_PIDFILE = "{dir}/indexer.pid", PIPE_STALL_AFTER = "\(Self.killAfter)", PIPE_STALL_MARK = "{dir}/stalled" }
            """)
        try await bed.waitUntil("pipe_recorder.py started") { bed.lines("indexer.pid").count == 1 }
        let firstPid = try #require(Int32(bed.lines("indexer.pid")[0]))

        let seqs = try await bed.publish((0..<Self.events).map {
            EventLine.make(type: "bulk.item", source: "bulk", id: "b\($0)", data: #"{"n":\#($0)}"#)
        })
        // The first process stops answering after `killAfter` deliveries, so the
        // kill lands mid-stream however fast or slow the machine is.
        try await bed.waitUntil("\(Self.killAfter) deliveries, then a stall") { bed.lines("stalled").count == 1 }
        #expect(kill(firstPid, SIGKILL) == 0)

        let wanted = Set(seqs)
        try await bed.waitUntil("every event received after the restart", timeout: .seconds(60)) {
            wanted.isSubset(of: Set(bed.lines("indexer.log").compactMap { Received($0)?.seq }))
        }
        try await bed.waitUntil("indexer settled through \(seqs.last!)") { try bed.ledger().settled("indexer", through: seqs.last!) }

        let received = bed.lines("indexer.log").compactMap(Received.init)
        let pids = received.map(\.pid).reduce(into: [Int32]()) { if $0.last != $1 { $0.append($1) } }
        #expect(pids.count == 2 && pids.first == firstPid, "one process before the kill, one after: \(pids)")
        // concurrency = 1: strictly in seq order within one process; across the
        // restart only the delivery in flight at the kill may come twice.
        for pid in pids {
            let mine = received.filter { $0.pid == pid }.map(\.seq)
            #expect(mine == mine.sorted() && Set(mine).count == mine.count, "process \(pid) got seqs out of order or twice")
        }
        #expect(received.map(\.seq) == received.map(\.seq).sorted(), "out of seq order across the restart")
        let repeats = received.count - Set(received.map(\.seq)).count
        #expect(repeats <= 1, "\(repeats) events received twice; at most the one in flight may be")
        #expect(received.filter { $0.attempt > 1 }.count <= 1, "only the delivery in flight at the kill is retried")
        #expect(Set(received.map(\.seq)) == wanted, "only the published bulk.* events")

        let ledger = try bed.ledger()
        #expect(try ledger.deadLetters("indexer").isEmpty)
        let stats = try #require(try bed.stats()["indexer"])
        #expect(stats.delivered == Self.events && stats.dead == 0 && stats.retrying == 0 && stats.lag == 0, "\(stats)")
        #expect(stats.failedAttempts <= 1, "the kill fails at most the one delivery in flight: \(stats)")
    }

    @Test("a pipe answer with retry:false dead-letters at once; a garbage line gets the process killed, restarted and the delivery retried; its stderr is logged under its name")
    func rejectAndGarbage() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "picky-pipe"
            types = ["p.*"]
            pipe = ["python3", "{examples}/pipe_recorder.py"]
            max_attempts = 2
            env = { PIPE_LOG = "{dir}/picky.log", PIPE_REJECT_TYPES = "p.reject", PIPE_GARBAGE_TYPES = "p.garbage" }
            """)
        let seqs = try await bed.publish(["p.first", "p.reject", "p.garbage", "p.last"].enumerated().map {
            EventLine.make(type: $0.element, source: "pipe", id: "p\($0.offset)")
        })
        try await bed.waitUntil("picky-pipe settled through \(seqs[3])", timeout: .seconds(60)) {
            try bed.ledger().settled("picky-pipe", through: seqs[3])
        }

        let received = bed.lines("picky.log").compactMap(Received.init)
        // first, reject: once each; garbage: twice (max_attempts), each time on a new process; last: once.
        #expect(received.map(\.seq) == [seqs[0], seqs[1], seqs[2], seqs[2], seqs[3]], "\(bed.lines("picky.log"))")
        #expect(Set(received.map(\.pid)).count == 3, "started, restarted after each garbage line: \(received.map(\.pid))")
        let dead = try bed.ledger().deadLetters("picky-pipe")
        try #require(dead.count == 2, "\(dead)")
        #expect(dead[0].seq == seqs[1] && dead[0].reason == "rejected" && dead[0].attempts == 1, "\(dead[0])")
        #expect(dead[0].lastError == "pipe_recorder.py refuses p.reject")
        #expect(dead[1].seq == seqs[2] && dead[1].reason == "max_attempts" && dead[1].attempts == 2, "\(dead[1])")
        #expect(dead[1].lastError.contains("wrote garbage"), "\(dead[1].lastError)")
        let stats = try #require(try bed.stats()["picky-pipe"])
        #expect(stats.delivered == 2 && stats.dead == 2 && stats.failedAttempts == 3, "\(stats)")

        let started = bed.broker.log.split(separator: "\n").filter { $0.contains("pipe_recorder.py: started") }
        #expect(started.count == 3, "\(bed.broker.log)")
        #expect(started.allSatisfy { $0.contains("hookbus.subscriber=picky-pipe") }, "\(started)")
    }

    @Test("pipe lines end at \\n only: an answer whose error holds U+2028 is one answer; a 200 KiB stderr line is drained and noted, and the process serves on; a last answer without \\n counts")
    func lineBreaksAndLongStderr() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        _ = try scratch.write("answers.py", #"""
            import json, sys
            for line in sys.stdin:
                delivery = json.loads(line)
                kind = delivery["event"]["type"]
                if kind == "p.loud":
                    sys.stderr.write("x" * (200 * 1024) + "\n")
                    sys.stderr.write("after the long line\n")
                    sys.stderr.flush()
                    answer = {"delivery": delivery["delivery"], "ok": True}
                else:
                    answer = {"delivery": delivery["delivery"], "ok": False, "retry": False,
                              "error": "first part\u2028second part\u2029third\rfourth"}
                if kind == "p.last":
                    # The last answer without its newline, then the end of stdout: it still counts.
                    sys.stdout.write(json.dumps(answer, ensure_ascii=False))
                    sys.stdout.flush()
                    sys.exit(0)
                sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            """#)
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "answers"
            types = ["p.*"]
            pipe = ["python3", "{dir}/answers.py"]
            """)
        let seqs = try await bed.publish(["p.separators", "p.loud", "p.last"].enumerated().map {
            EventLine.make(type: $0.element, source: "pipe", id: "b\($0.offset)")
        })
        try await bed.waitUntil("answers settled through \(seqs[2])", timeout: .seconds(60)) {
            try bed.ledger().settled("answers", through: seqs[2])
        }
        let dead = try bed.ledger().deadLetters("answers")
        try #require(dead.count == 2, "\(dead)\n\(bed.broker.log)")
        #expect(dead.map(\.seq) == [seqs[0], seqs[2]])
        #expect(dead.allSatisfy { $0.reason == "rejected" && $0.lastError == "first part\u{2028}second part\u{2029}third\rfourth" }, "\(dead)")
        let stats = try #require(try bed.stats()["answers"])
        #expect(stats.delivered == 1 && stats.dead == 2 && stats.failedAttempts == 2, "\(stats)")
        let log = bed.broker.log
        #expect(!log.contains("wrote garbage"), "\(log)")
        #expect(!log.contains("before answering"), "the last answer, without its newline, counted:\n\(log)")
        #expect(log.contains("(a line longer than 16384 bytes, not logged)"), "\(log)")
        #expect(log.contains("after the long line"), "\(log)")
    }

    /// A pipe command that dies at once on its first three runs, then answers
    /// each delivery.
    static let slowStarter = """
        #!/bin/sh
        runs=$(cat "$RUNS" 2>/dev/null || echo 0)
        runs=$((runs + 1))
        echo "$runs" > "$RUNS"
        [ "$runs" -le 3 ] && exit 3
        while IFS= read -r line; do
            id=$(printf '%s' "$line" | sed 's/^{"delivery":\\([0-9]*\\).*/\\1/')
            printf '{"delivery":%s,"ok":true}\\n' "$id"
        done
        """

    @Test("a pipe delivery's timeout runs from its write to a process: one that waited through restart delays longer than the timeout is delivered by the next process, which is not killed for it")
    func timeoutCountsFromTheWrite() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let script = try scratch.write("slow.sh", Self.slowStarter)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script)
        // Restart delays 0.5, 1 and 2 s: the delivery waits 3.5 s for a process that
        // lives, more than three times its 1 s timeout.
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "slow"
            types = ["x.*"]
            pipe = ["{dir}/slow.sh"]
            timeout = "1s"
            max_attempts = 10
            backoff_initial = "50ms"
            backoff_max = "50ms"
            env = { RUNS = "{dir}/runs" }
            """)
        let seq = try await bed.publish(EventLine.make(type: "x.y", source: "s", id: "1"))
        try await bed.waitUntil("delivered", timeout: .seconds(60)) { try bed.ledger().settled("slow", through: seq) }
        let stats = try #require(try bed.stats()["slow"])
        #expect(stats.delivered == 1 && stats.dead == 0, "\(stats)")
        #expect(!bed.broker.log.contains("did not answer delivery"), "a delivery was timed out while no process ran:\n\(bed.broker.log)")
        #expect(bed.lines("runs") == ["4"], "the fourth process answered, and was not killed: \(bed.lines("runs"))")
    }

    @Test("a pipe command that cannot start: its deliveries fail with why, and end as dead letters that say it")
    func commandThatCannotStart() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "missing"
            types = ["x.*"]
            pipe = ["/nonexistent/hookbus-pipe"]
            timeout = "20s"
            max_attempts = 2
            """)
        _ = try await bed.publish(EventLine.make(type: "x.y", source: "s", id: "1"))
        try await bed.waitUntil("a dead letter", timeout: .seconds(60)) { try bed.ledger().deadLetters("missing").count == 1 }
        let letter = try #require(try bed.ledger().deadLetters("missing").first)
        #expect(letter.lastError.contains("pipe process missing could not start") && letter.lastError.contains("/nonexistent/hookbus-pipe"),
                "\(letter.lastError)")
        #expect(try bed.stats()["missing"]?.lastError?.contains("could not start") == true)
    }
}
