import Foundation
import Testing

/// The example scripts users copy from `tools/`, run as the README and their
/// own comments say to: each against a real broker.
@Suite("Tools: example subscribers and producer")
struct ToolsTests {
    @Test("subscribers/notify.sh as an exec subscriber logs each event: seq, type, id, attempt, replay and the event JSON")
    func notify() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "notify"
            types = ["client.added", "client.removed"]
            exec = ["{tools}/subscribers/notify.sh"]
            env = { NOTIFY_LOG = "{dir}/notify.log" }
            """)
        let seqs = try await bed.publish([
            EventLine.make(type: "client.added", source: "fleet", id: "c-1", data: #"{"ip":"10.0.0.7"}"#),
            EventLine.make(type: "client.renamed", source: "fleet", id: "c-2"),
            EventLine.make(type: "client.removed", source: "fleet", id: "c-3"),
        ])
        try await bed.waitUntil("notify logged two events") { bed.lines("notify.log").count == 2 }
        try await bed.waitUntil("notify settled") { try bed.ledger().settled("notify", through: seqs[2]) }
        let ledger = try bed.ledger()
        let added = try #require(try ledger.event(seq: seqs[0]))
        let removed = try #require(try ledger.event(seq: seqs[2]))
        #expect(bed.lines("notify.log") == [
            "\(seqs[0]) client.added c-1 attempt=1 replay=0 \(added)",
            "\(seqs[2]) client.removed c-3 attempt=1 replay=0 \(removed)",
        ])

        let replay = try await bed.cli("replay", "--subscriber", "notify", "--from-seq", "\(seqs[0])", "--to-seq", "\(seqs[0])")
        #expect(replay.status == 0, "\(replay)")
        try await bed.waitUntil("notify logged the replay") { bed.lines("notify.log").count == 3 }
        #expect(bed.lines("notify.log").last == "\(seqs[0]) client.added c-1 attempt=1 replay=1 \(added)")
        #expect(try bed.ledger().deadLetters("notify").isEmpty)
    }

    @Test("subscribers/pipe_indexer.py as a pipe subscriber writes every seq once, replays included")
    func pipeIndexer() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "indexer"
            types = ["doc.*"]
            pipe = ["python3", "{tools}/subscribers/pipe_indexer.py", "{dir}/index.ndjson"]
            """)
        let seqs = try await bed.publish((0..<20).map {
            EventLine.make(type: "doc.saved", source: "docs", id: "d\($0)", data: #"{"n":\#($0)}"#)
        })
        try await bed.waitUntil("indexer settled through \(seqs.last!)") { try bed.ledger().settled("indexer", through: seqs.last!) }

        // Delivered again on purpose: the script drops what it already wrote.
        let replay = try await bed.cli("replay", "--subscriber", "indexer", "--from-seq", "\(seqs[0])")
        #expect(replay.status == 0, "\(replay)")
        try await bed.waitUntil("the replays answered") {
            try bed.stats()["indexer"]?.delivered == 40 && bed.ledger().retries("indexer").isEmpty
        }
        let lines = bed.lines("index.ndjson")
        let entries = try lines.map { try JSONText.object($0) }
        #expect(entries.compactMap { JSONText.int($0["seq"]) } == seqs, "each seq once, in order: \(lines)")
        #expect(entries.map { ($0["event"] as? [String: Any])?["id"] as? String } == (0..<20).map { "d\($0)" })
        let stats = try #require(try bed.stats()["indexer"])
        #expect(stats.failedAttempts == 0 && stats.dead == 0, "\(stats)")
    }

    @Test("subscribers/socket_subscriber.py --name --count N prints and acks N matching events, then exits 0")
    func socketSubscriber() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let script = try BackgroundTool(URL(fileURLWithPath: ToolScripts.socketSubscriber), [
            "--socket", bed.broker.socketPath, "--name", "audit", "--type", "client.*", "--count", "3",
        ], scratch: scratch)
        defer { script.stop() }
        try await bed.waitUntil("socket_subscriber.py subscribed as audit") { try bed.connectedSocketSubscribers().contains("audit") }

        let seqs = try await bed.publish([
            EventLine.make(type: "client.added", source: "fleet", id: "a-1"),
            EventLine.make(type: "other.thing", source: "fleet", id: "x"),
            EventLine.make(type: "client.renamed", source: "fleet", id: "a-2"),
            EventLine.make(type: "client.removed", source: "fleet", id: "a-3"),
        ])
        let result = try await script.finished()
        #expect(result.status == 0 && !result.signaled, "\(result)")
        #expect(result.stdoutLines == [
            "\(seqs[0]) client.added a-1", "\(seqs[2]) client.renamed a-2", "\(seqs[3]) client.removed a-3",
        ], "\(result)")

        // It acked all three before leaving: nothing left to redeliver.
        try await bed.waitUntil("audit released") { try !bed.connectedSocketSubscribers().contains("audit") }
        let ledger = try bed.ledger()
        let left = try ledger.retries("audit")
        #expect(left.isEmpty, "\(left)")
        #expect(try (ledger.cursor("audit") ?? 0) >= seqs[3])
    }

    @Test("subscribers/socket_subscriber.py and producers/publish.py exit 69 when no broker listens")
    func noBroker() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let socket = scratch.path("nobody.sock")
        let subscriber = try await ToolScripts.run(ToolScripts.socketSubscriber, ["--socket", socket, "--count", "1"], scratch: scratch)
        #expect(subscriber.status == 69 && subscriber.stderr.contains("cannot connect to hookbusd at \(socket)"), "\(subscriber)")
        let producer = try await ToolScripts.run(ToolScripts.publish, ["--socket", socket, "x.y"], scratch: scratch)
        #expect(producer.status == 69 && producer.stderr.contains("cannot connect to hookbusd at \(socket)"), "\(producer)")
    }

    @Test("producers/publish.py publishes from arguments and from stdin, prints every reply, and exits 1 on a refused event")
    func publish() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let socket = bed.broker.socketPath

        let one = try await ToolScripts.run(ToolScripts.publish, [
            "--socket", socket, "client.added", #"{"ip":"10.0.0.2","hostname":"a","fleet":"f1"}"#,
        ], scratch: scratch)
        #expect(one.status == 0, "\(one)")
        try #require(one.stdoutLines.count == 1, "\(one)")
        let reply = try WireReply(one.stdoutLines[0])
        #expect(reply.ok && reply.seq != nil && reply.id != nil, "\(reply)")
        let stored = try #require(try bed.broker.outbox().row(source: "publish.py", id: reply.id ?? ""))
        #expect(stored.seq == reply.seq && stored.type == "client.added")
        #expect(try JSONText.object(stored.event)["data"] as? [String: String] == ["ip": "10.0.0.2", "hostname": "a", "fleet": "f1"])

        let lines = (0..<5).map { #"{"type":"batch.item","id":"b\#($0)","data":{"n":\#($0)}}"# }.joined(separator: "\n") + "\n"
        let batch = try await ToolScripts.run(ToolScripts.publish, ["--socket", socket, "--stdin", "--source", "batch", "--window", "2"],
                                              stdin: Array(lines.utf8), scratch: scratch)
        #expect(batch.status == 0, "\(batch)")
        let replies = try batch.stdoutLines.map(WireReply.init)
        #expect(replies.count == 5 && replies.allSatisfy { $0.ok && !$0.duplicate }, "\(batch)")
        #expect(replies.map(\.id) == (0..<5).map { "b\($0)" })
        #expect(try bed.broker.outbox().rows(source: "batch").map(\.id) == (0..<5).map { "b\($0)" })

        // Sent again: duplicates, still exit 0, nothing stored twice.
        let resent = try await ToolScripts.run(ToolScripts.publish, ["--socket", socket, "--stdin", "--source", "batch"],
                                               stdin: Array(lines.utf8), scratch: scratch)
        let again = try resent.stdoutLines.map(WireReply.init)
        #expect(resent.status == 0 && again.count == 5 && again.allSatisfy { $0.ok && $0.duplicate }, "\(resent)")
        #expect(try bed.broker.outbox().rows(source: "batch").count == 5)

        // One refused event among good ones: every reply printed, exit 1, the good ones stored.
        let mixed = """
            {"type":"mixed.ok","id":"m1"}
            {"type":"mixed.bad","id":"m2","specversion":"0.3"}
            {"type":"mixed.ok","id":"m3"}

            """
        let refused = try await ToolScripts.run(ToolScripts.publish, ["--socket", socket, "--stdin", "--source", "mixed"],
                                                stdin: Array(mixed.utf8), scratch: scratch)
        #expect(refused.status == 1, "\(refused)")
        let verdicts = try refused.stdoutLines.map(WireReply.init)
        try #require(verdicts.map(\.ok) == [true, false, true], "\(refused)")
        #expect(verdicts[1].code == "invalid_event" && verdicts[1].message?.contains("specversion") == true, "\(refused)")
        #expect(try bed.broker.outbox().rows(source: "mixed").map(\.id) == ["m1", "m3"])
    }
}
