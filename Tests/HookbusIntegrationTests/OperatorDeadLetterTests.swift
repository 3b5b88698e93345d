import Foundation
import HookbusClient
import HookbusCore
import Testing

/// `hookbus dlq list|show|retry|purge` on the dead letters of a real exec
/// subscriber whose script fails until it is "fixed".
@Suite("Operator: hookbus dlq")
struct OperatorDeadLetterTests {
    /// An exec subscriber that logs every run as "<seq> <attempt> <replay>" and
    /// fails until the marker file exists: a bug in a script, then its fix.
    static let gate = """
        #!/bin/sh
        cat > /dev/null
        echo "$HOOKBUS_SEQ $HOOKBUS_ATTEMPT ${HOOKBUS_REPLAY:-0}" >> "$GATE_LOG"
        if [ -f "$GATE_FIXED" ]; then exit 0; fi
        echo "gate.sh: not fixed yet (seq $HOOKBUS_SEQ)" >&2
        exit 1
        """

    static func writeGate(in scratch: ScratchDirectory) throws {
        let path = try scratch.write("gate.sh", gate)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    @Test("dlq list shows dead letters; show has the event and every error; retry delivers once the script is fixed; purge removes; unknown ids are refused")
    func lifecycle() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        try Self.writeGate(in: scratch)
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "gate"
            types = ["job.*"]
            exec = ["{dir}/gate.sh"]
            max_attempts = 2
            env = { GATE_LOG = "{dir}/gate.log", GATE_FIXED = "{dir}/fixed" }
            """)
        let seqs = try await bed.publish([
            EventLine.make(type: "job.run", source: "jobs", id: "j-1", data: #"{"n":1}"#),
            EventLine.make(type: "job.run", source: "jobs", id: "j-2", data: #"{"n":2}"#),
        ])
        try await bed.waitUntil("two dead letters for gate") { try bed.ledger().deadLetters("gate").count == 2 }

        // list, as a table and as JSON.
        let table = try await bed.cli("dlq", "list")
        #expect(table.status == 0, "\(table)")
        #expect(table.stdoutLines.first?.hasPrefix("ID  SUBSCRIBER  SEQ  TYPE") == true, "\(table)")
        for seq in seqs {
            #expect(table.stdoutLines.contains { $0.contains(" gate ") && $0.contains(" \(seq) ") && $0.contains("max_attempts") }, "\(table)")
        }
        #expect(!table.stdout.contains("of 2 dead letters"), "all listed: no note\n\(table)")
        // Fewer than there are: the oldest, and a note saying how many there are.
        let first = try await bed.cli("dlq", "list", "--limit", "1")
        #expect(first.status == 0 && first.stdoutLines.count == 3 && first.stdoutLines[1].contains(" \(seqs[0]) ")
                && first.stdoutLines[2] == "(the oldest 1 of 2 dead letters: --limit 2 lists them all)", "\(first)")
        let listed = try #require(try await bed.cliJSON("dlq", "list") as? [[String: Any]])
        try #require(listed.count == 2, "\(listed)")
        #expect(listed.map { JSONText.int($0["seq"]) } == seqs)
        #expect(listed.allSatisfy { $0["subscriber"] as? String == "gate" && JSONText.int($0["attempts"]) == 2 && $0["reason"] as? String == "max_attempts" })
        #expect(listed.map { $0["event_id"] as? String } == ["j-1", "j-2"])
        let ids = listed.compactMap { JSONText.int($0["id"]) }
        try #require(ids.count == 2)
        let (fixedID, purgedID) = (ids[0], ids[1])
        let otherJSON = try await bed.cliJSON("dlq", "list", "--subscriber", "other")
        #expect((otherJSON as? [Any])?.isEmpty == true, "\(otherJSON)")
        let none = try await bed.cli("dlq", "list", "--subscriber", "other")
        #expect(none.status == 0 && none.stdout == "no dead letters for other\n", "\(none)")

        // show: the stored event and both attempts' errors.
        let shown = try #require(try await bed.cliJSON("dlq", "show", "\(fixedID)") as? [String: Any])
        let event = try #require(shown["event"] as? [String: Any])
        #expect(event["id"] as? String == "j-1" && event["type"] as? String == "job.run" && event["source"] as? String == "jobs")
        #expect(JSONText.int((event["data"] as? [String: Any])?["n"]) == 1)
        let errors = try #require(shown["errors"] as? [[String: Any]])
        #expect(errors.map { JSONText.int($0["attempt"]) } == [1, 2], "\(errors)")
        #expect(errors.allSatisfy { ($0["error"] as? String)?.contains("gate.sh: not fixed yet (seq \(seqs[0]))") == true }, "\(errors)")
        #expect((shown["last_error"] as? String)?.contains("not fixed yet") == true)
        let human = try await bed.cli("dlq", "show", "\(fixedID)")
        #expect(human.status == 0 && human.stdout.contains("seq: \(seqs[0])") && human.stdout.contains("attempt 2 at "), "\(human)")
        #expect(human.stdout.contains("event:") && human.stdout.contains("\"j-1\""), "\(human)")

        // Unknown ids: exit 1 and a message naming the id; nothing changes.
        let unknownShow = try await bed.cli("dlq", "show", "9999")
        #expect(unknownShow.status == 1 && unknownShow.stderr == "hookbus: bad_request (unknown_dead_letter): no dead letter with id 9999\n", "\(unknownShow)")
        let unknownRetry = try await bed.cli("dlq", "retry", "\(fixedID)", "9999")
        #expect(unknownRetry.status == 1 && unknownRetry.stderr.contains("no dead letter with id 9999; nothing was changed"), "\(unknownRetry)")
        #expect(try bed.ledger().deadLetters("gate").count == 2, "a refused retry changes nothing")

        // Fix the script, retry the first: delivered once, as a replay, and no longer a dead letter.
        try #require(FileManager.default.createFile(atPath: scratch.path("fixed"), contents: nil))
        let retried = try await bed.cli("dlq", "retry", "\(fixedID)")
        #expect(retried.status == 0 && retried.stdout == "queued 1 dead letter(s) for delivery\n", "\(retried)")
        try await bed.waitUntil("the retried dead letter delivered") { bed.lines("gate.log").contains("\(seqs[0]) 1 1") }
        try await bed.waitUntil("gate settled") { try bed.ledger().retries("gate").isEmpty }
        let remaining = try #require(try await bed.cliJSON("dlq", "list") as? [[String: Any]])
        #expect(remaining.compactMap { JSONText.int($0["id"]) } == [purgedID], "\(remaining)")

        // Purge the other: gone for good, never delivered.
        let purged = try await bed.cli("dlq", "purge", "\(purgedID)")
        #expect(purged.status == 0 && purged.stdout == "purged 1 dead letter(s)\n", "\(purged)")
        let empty = try await bed.cli("dlq", "list")
        #expect(empty.status == 0 && empty.stdout == "no dead letters\n", "\(empty)")
        let nothing = try await bed.cli("dlq", "purge", "--all")
        #expect(nothing.status == 1 && nothing.stderr == "hookbus: bad_request (empty_selection): there are no dead letters\n", "\(nothing)")
        #expect(try bed.ledger().retries("gate").isEmpty)

        // The script ran: twice per event while broken, once more for the retried one.
        #expect(bed.lines("gate.log").sorted() == ["\(seqs[0]) 1 0", "\(seqs[0]) 2 0", "\(seqs[0]) 1 1", "\(seqs[1]) 1 0", "\(seqs[1]) 2 0"].sorted(),
                "\(bed.lines("gate.log"))")
        let stats = try #require(try bed.stats()["gate"])
        #expect(stats.delivered == 1 && stats.dead == 0 && stats.retrying == 0, "\(stats)")
    }

    @Test("dlq retry leaves the dead letters of a subscriber that no longer exists: named, the retry is refused; under --all they are skipped and listed")
    func retryOfVanishedSubscriber() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let socket = bed.broker.socketPath
        // A durable subscriber and an unnamed one each reject the event outright.
        let durable = try SocketSession(socket)
        try #require(try await onThread { try durable.subscribe(name: "idx", types: ["job.*"], window: 4) }.ok)
        let unnamed = try SocketSession(socket)
        try #require(try await onThread { try unnamed.subscribe(name: nil, types: ["job.*"], window: 4) }.ok)
        let seq = try await bed.publish(EventLine.make(type: "job.run", source: "jobs", id: "v-1"))
        for session in [durable, unnamed] {
            try await onThread {
                let delivery = try session.nextDelivery()
                try session.client.send(line: #"{"op":"nack","delivery":\#(delivery.delivery),"retry":false,"error":"no"}"#)
            }
        }
        func listed() async throws -> [(id: Int64, subscriber: String)] {
            (try await bed.cliJSON("dlq", "list") as? [[String: Any]] ?? []).map { (JSONText.int($0["id"]) ?? 0, $0["subscriber"] as? String ?? "") }
        }
        try await bed.waitUntil("two dead letters") { try bed.ledger().deadLetterCount() == 2 }
        let letters = try await listed()
        let kept = try #require(letters.first { $0.subscriber == "idx" })
        let gone = try #require(letters.first { $0.subscriber.hasPrefix("~") })
        unnamed.disconnect()
        try await bed.waitUntil("the unnamed subscription gone") { try !bed.stats().keys.contains(gone.subscriber) }

        let named = try await bed.cli("dlq", "retry", "\(gone.id)")
        #expect(named.status == 1 && named.stderr.contains("dead letter \(gone.id) belongs to \(gone.subscriber), which no longer exists")
                && named.stderr.contains("nothing was changed"), "\(named)")
        let onlyGone = try await bed.cli("dlq", "retry", "--all", "--subscriber", gone.subscriber)
        #expect(onlyGone.status == 1 && onlyGone.stderr.contains("belong to subscribers that no longer exist"), "\(onlyGone)")
        #expect(try await listed().count == 2, "a refused retry changes nothing")

        let all = try await bed.cli("dlq", "retry", "--all")
        #expect(all.status == 0 && all.stdoutLines == [
            "queued 1 dead letter(s) for delivery",
            "left 1 dead letter(s) of subscribers that no longer exist: \(gone.id) (hookbus dlq purge removes them)",
        ], "\(all)")
        #expect(try await listed().map(\.id) == [gone.id], "the vanished subscriber's dead letter stays, for the record")
        // The durable subscriber's comes again, as a replay.
        let again = try await onThread { try durable.nextDelivery() }
        #expect(again.seq == seq && again.replay && again.subscriber == "idx", "\(again)")
        _ = kept
    }

    @Test("what an operator reads: dlq show prints the event as stored (1e400, 1.10 and escapes kept), tables show an error's start and end without control characters, a short --json list says so on stderr, an id given twice counts once")
    func operatorOutput() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // A Python-like traceback with a terminal escape sequence on stderr.
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "tb"
            types = ["job.*"]
            exec = ["/bin/sh", "-c", "printf 'Traceback (most recent call last):\\n  File x.py, line 3\\n\\\\033[31mValueError: bad\\n' >&2; exit 3"]
            max_attempts = 1
            """)
        let line = #"{"type":"job.run","source":"jobs","id":"big","data":{"g":1e400,"p":1.10,"s":"a\/b"}}"#
        let seqs = try await bed.publish([line, EventLine.make(type: "job.run", source: "jobs", id: "other")])
        try await bed.waitUntil("two dead letters") { try bed.ledger().deadLetterCount() == 2 }
        let ids = (try await bed.cliJSON("dlq", "list") as? [[String: Any]] ?? []).compactMap { JSONText.int($0["id"]) }
        try #require(ids.count == 2)

        let shown = try await bed.cli("dlq", "show", "\(ids[0])")
        #expect(shown.status == 0 && shown.stdout.contains("seq: \(seqs[0])"), "\(shown)")
        #expect(shown.stdout.contains(#""data":{"g":1e400,"p":1.10,"s":"a\/b"}"#), "the event as stored: \(shown)")
        #expect(!shown.stdout.contains("\u{1B}") && shown.stdout.contains("\\x1B[31mValueError: bad"), "escapes shown, not sent: \(shown)")
        #expect(shown.stdoutLines.contains("      \\x1B[31mValueError: bad"), "each stderr line on a line of its own: \(shown)")
        let raw = try await bed.cli("dlq", "show", "\(ids[0])", "--json")
        #expect(raw.status == 0 && raw.stdout.contains(#""id":"big","data":{"g":1e400,"p":1.10,"s":"a\/b"}}}"#), "\(raw)")

        // Tables: one line a row, the error's start and its last line.
        let table = try await bed.cli("dlq", "list")
        #expect(table.status == 0 && table.stdoutLines.count == 3, "\(table)")
        #expect(table.stdoutLines[1].contains("exit 3; stderr: Tra") && table.stdoutLines[1].contains("…")
                && table.stdoutLines[1].hasSuffix("\\n\\x1B[31mValueError: bad"), "\(table)")
        let stats = try await bed.cli("stats")
        let row = try #require(stats.stdoutLines.first { $0.hasPrefix("tb ") }, "\(stats)")
        #expect(row.contains("s ago: exit 3; stderr: Tra") && row.hasSuffix("\\n\\x1B[31mValueError: bad"), "\(stats)")

        // A short JSON list: the array as ever, and a note on stderr.
        let short = try await bed.cli("dlq", "list", "--limit", "1", "--json")
        #expect(short.status == 0 && (try? JSONText.array(short.stdout))?.count == 1
                && short.stderr == "(the oldest 1 of 2 dead letters: --limit 2 lists them all)\n", "\(short)")

        // The same id twice is one dead letter.
        let purged = try await bed.cli("dlq", "purge", "\(ids[1])", "\(ids[1])")
        #expect(purged.status == 0 && purged.stdout == "purged 1 dead letter(s)\n", "\(purged)")
    }

    @Test("a broker that accepts the connection and never answers: the command gives up after --timeout with exit 69")
    func answerTimeout() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // A listening socket nobody accepts on: connect succeeds (the backlog), no answer comes.
        let path = scratch.path("mute.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        let bound = withUnixAddress(path) { bind(fd, $0, $1) }
        try #require(bound == 0 && listen(fd, 8) == 0)
        for command in [["ping"], ["stats"], ["dlq", "list"], ["dlq", "purge", "1"], ["replay", "--all"]] {
            let result = try await ToolRun.run(try TestBinaries.hookbus(), command + ["--socket", path, "--timeout", "1"], scratch: scratch)
            #expect(result.status == 69 && result.stdout.isEmpty
                    && result.stderr == "hookbus: no answer from hookbusd at \(path) within 1 s\n", "\(command): \(result)")
        }
    }
}
