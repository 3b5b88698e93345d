import Foundation
import Testing

/// `exec` subscribers, run by the real broker on the example scripts of
/// `tools/examples`: the exec contract of DESIGN.md ("Delivery"), retries,
/// dead letters and the timeout.
@Suite("Dispatch: exec subscribers")
struct DispatchExecTests {
    static let clientAdded = EventLine.make(
        type: "client.added", source: "fleet", id: "c-1", data: #"{"ip":"10.0.0.7","hostname":"alpha","fleet":"f1"}"#)

    @Test("exec: the stored event JSON on stdin; HOOKBUS_SEQ, _EVENT_ID, _EVENT_TYPE, _SUBSCRIBER, _ATTEMPT set; no broker descriptors inherited")
    func stdinAndEnvironment() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "notify"
            types = ["client.added"]
            exec = ["{examples}/record.sh"]
            env = { RECORD_DIR = "{dir}/rec", RECORD_FDS = "1" }
            """)
        let skipped = try await bed.publish(EventLine.make(type: "client.removed", source: "fleet", id: "c-0"))
        let seq = try await bed.publish(Self.clientAdded)
        try await bed.waitUntil("notify recorded seq \(seq)") { !bed.lines("rec/notify.log").isEmpty }
        try await bed.waitUntil("notify settled through \(seq)") { try bed.ledger().settled("notify", through: seq) }

        // One line: "<seq> <attempt> <subscriber> <type> <id> <replay>", for the matching event only.
        #expect(bed.lines("rec/notify.log") == ["\(seq) 1 notify client.added c-1 0"], "\(bed.broker.log)")
        #expect(bed.contents("rec/notify-\(skipped).json") == nil, "client.removed does not match the filter")
        let stored = try #require(try bed.ledger().event(seq: seq))
        let stdin = try #require(bed.contents("rec/notify-\(seq).json"))
        #expect(stdin == stored + "\n", "stdin is the stored event JSON, one line")

        // Nothing of the broker's leaks into the child: no socket, no database or lock file.
        let fds = bed.lines("rec/notify-\(seq).fds")
        #expect(!fds.isEmpty)
        let leaked = fds.filter { $0.contains("socket:") || $0.contains(scratch.root + "/hb.db") || $0.contains(".lock") }
        #expect(leaked.isEmpty, "descriptors inherited from the broker: \(leaked)")
        try #require(try bed.stats()["notify"]?.delivered == 1)
    }

    @Test("a script that fails twice then succeeds is delivered on attempt 3, once, and not dead-lettered")
    func failsTwiceThenSucceeds() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "flaky"
            types = ["client.added"]
            exec = ["{examples}/flaky.sh"]
            env = { FLAKY_DIR = "{dir}/flaky", FLAKY_FAILURES = "2" }
            """)
        let seq = try await bed.publish(Self.clientAdded)
        try await bed.waitUntil("flaky.sh succeeded") { bed.lines("flaky/flaky.log").contains { $0.hasSuffix(" ok") } }
        try await bed.waitUntil("flaky settled through \(seq), its retry row gone") { try bed.ledger().settled("flaky", through: seq) }

        // "<seq> <HOOKBUS_ATTEMPT> <runs counted by the script> <outcome>"
        #expect(bed.lines("flaky/flaky.log") == ["\(seq) 1 1 fail", "\(seq) 2 2 fail", "\(seq) 3 3 ok"], "\(bed.broker.log)")
        let ledger = try bed.ledger()
        #expect(try ledger.deadLetters("flaky").isEmpty)
        #expect(try ledger.retries("flaky").isEmpty)
        #expect(try ledger.eventData(type: "hookbus.dead_lettered").isEmpty)
        let stats = try #require(try bed.stats()["flaky"])
        #expect(stats.delivered == 1 && stats.failedAttempts == 2 && stats.retrying == 0 && stats.dead == 0, "\(stats)")
        #expect(stats.lastError?.contains("flaky.sh: failing seq \(seq) on purpose (run 2 of 2 failing)") == true, "\(stats)")
    }

    @Test("an always-failing script is dead-lettered after max_attempts with its stderr tail and every attempt's error; hookbus.dead_lettered is published")
    func alwaysFailing() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // 300 lines of progress before the last words: about 10 KiB of stderr, more than the tail kept.
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "broken"
            types = ["client.added"]
            exec = ["{examples}/fail.sh"]
            max_attempts = 3
            env = { FAIL_STATUS = "3", FAIL_NOISE = "300", FAIL_LOG = "{dir}/broken.log" }
            """)
        let seq = try await bed.publish(Self.clientAdded)
        try await bed.waitUntil("a dead letter for broken") { try !bed.ledger().deadLetters("broken").isEmpty }
        try await bed.waitUntil("hookbus.dead_lettered published") { try !bed.ledger().eventData(type: "hookbus.dead_lettered").isEmpty }

        let ledger = try bed.ledger()
        let dead = try ledger.deadLetters("broken")
        try #require(dead.count == 1, "\(dead)")
        let letter = dead[0]
        #expect(letter.seq == seq && letter.eventID == "c-1" && letter.eventType == "client.added")
        #expect(letter.attempts == 3)
        #expect(letter.reason == "max_attempts")
        #expect(try letter.event == ledger.event(seq: seq), "the dead letter keeps a copy of the event")
        // The tail of stderr: the last words, not the beginning.
        #expect(letter.lastError.hasPrefix("exit 3; stderr: "), "\(letter.lastError)")
        #expect(letter.lastError.hasSuffix("fail.sh: cannot deliver seq \(seq) (attempt 3)"), "\(letter.lastError)")
        #expect(letter.lastError.contains("progress line 300 of 300"))
        #expect(!letter.lastError.contains("progress line 1 of 300"), "the head of a long stderr is cut")
        #expect(letter.lastError.utf8.count < 4096, "only a tail is kept: \(letter.lastError.utf8.count) bytes")
        // Every attempt's error, in order.
        #expect(letter.errors.map(\.attempt) == [1, 2, 3])
        for entry in letter.errors {
            #expect(entry.error.hasPrefix("exit 3; stderr: ") && entry.error.hasSuffix("(attempt \(entry.attempt))"), "\(entry)")
        }
        #expect(bed.lines("broken.log") == ["\(seq) 1", "\(seq) 2", "\(seq) 3"])
        #expect(try ledger.retries("broken").isEmpty)

        let announced = try ledger.eventData(type: "hookbus.dead_lettered")
        try #require(announced.count == 1, "\(announced)")
        #expect(announced[0]["subscriber"] as? String == "broken")
        #expect((announced[0]["seq"] as? NSNumber)?.int64Value == seq)
        #expect(announced[0]["reason"] as? String == "max_attempts")
        #expect((announced[0]["attempts"] as? NSNumber)?.intValue == 3)
        #expect(announced[0]["event_type"] as? String == "client.added")

        let stats = try #require(try bed.stats()["broken"])
        #expect(stats.delivered == 0 && stats.failedAttempts == 3 && stats.dead == 1 && stats.retrying == 0, "\(stats)")
        #expect(stats.lastError == letter.lastError)
    }

    @Test("exit 65 dead-letters at once: one attempt, reason rejected")
    func exit65Rejects() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "picky"
            types = ["client.added"]
            exec = ["{examples}/fail.sh"]
            max_attempts = 5
            env = { FAIL_STATUS = "65", FAIL_LOG = "{dir}/picky.log" }
            """)
        let seq = try await bed.publish(Self.clientAdded)
        try await bed.waitUntil("a dead letter for picky") { try !bed.ledger().deadLetters("picky").isEmpty }
        try await bed.waitUntil("picky settled through \(seq)") { try bed.ledger().settled("picky", through: seq) }

        let ledger = try bed.ledger()
        let dead = try ledger.deadLetters("picky")
        try #require(dead.count == 1, "\(dead)")
        #expect(dead[0].seq == seq)
        #expect(dead[0].attempts == 1)
        #expect(dead[0].reason == "rejected")
        #expect(dead[0].lastError.hasPrefix("exit 65"), "\(dead[0].lastError)")
        #expect(dead[0].lastError.hasSuffix("fail.sh: cannot deliver seq \(seq) (attempt 1)"), "\(dead[0].lastError)")
        #expect(dead[0].errors.map(\.attempt) == [1])
        #expect(bed.lines("picky.log") == ["\(seq) 1"], "run once, never retried")
        try await bed.waitUntil("hookbus.dead_lettered published") { try !bed.ledger().eventData(type: "hookbus.dead_lettered").isEmpty }
        #expect(try ledger.eventData(type: "hookbus.dead_lettered").map { $0["reason"] as? String } == ["rejected"])
        let stats = try #require(try bed.stats()["picky"])
        #expect(stats.delivered == 0 && stats.failedAttempts == 1 && stats.dead == 1 && stats.retrying == 0, "\(stats)")
    }

    @Test("a script that sleeps past its timeout is killed with its children (SIGTERM, or SIGKILL if it ignores SIGTERM); the attempt fails with \"timed out\"",
          arguments: [false, true])
    func timeoutKillsProcessGroup(ignoringTerm: Bool) async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // A long backoff: the one retry the test looks at is not run while it looks.
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "hang"
            types = ["client.added"]
            exec = ["{examples}/hang.sh"]
            timeout = "500ms"
            max_attempts = 2
            backoff_initial = "10m"
            backoff_max = "10m"
            env = { HANG_PIDFILE = "{dir}/hang.pids", HANG_IGNORE_TERM = "\(ignoringTerm ? 1 : 0)" }
            """)
        let seq = try await bed.publish(Self.clientAdded)
        try await bed.waitUntil("hang.sh wrote its pids") { bed.lines("hang.pids").count == 1 }
        let pids = bed.lines("hang.pids")[0].split(separator: " ").compactMap { Int32($0) }
        try #require(pids.count == 2, "\(bed.lines("hang.pids"))")
        let (script, child) = (pids[0], pids[1])

        try await bed.waitUntil("the timed-out attempt recorded as a retry") { try !bed.ledger().retries("hang").isEmpty }
        let retry = try #require(try bed.ledger().retries("hang").first)
        #expect(retry.seq == seq && retry.attempt == 1)
        #expect(retry.lastError?.hasPrefix("timed out after 500ms") == true, "\(retry.lastError ?? "nil")")

        // The script is the broker's child: it must be reaped (gone). Its own
        // child was orphaned when the script died: gone, or a zombie that
        // belongs to whoever adopted it, never still running.
        let broker = bed.broker.pid
        try await bed.waitUntil("hang.sh (\(script)) killed and reaped; its child \(child) killed") {
            let scriptGone = DispatchProcess.status(script) == nil
            let childDead = DispatchProcess.status(child).map { $0.state == "Z" && $0.parent != broker } ?? true
            return scriptGone && childDead
        }
        let stats = try #require(try bed.stats()["hang"])
        #expect(stats.failedAttempts == 1 && stats.retrying == 1 && stats.dead == 0 && stats.delivered == 0, "\(stats)")
        #expect(stats.lastError?.contains("timed out") == true)
        #expect(try bed.ledger().deadLetters("hang").isEmpty)
    }
}
