import Foundation
import Testing

/// `hookbus publish`, run as a user would: flags, NDJSON on stdin, no broker.
@Suite("hookbus publish")
struct PublishCLITests {
    @Test("one event from flags: the reply is printed and the exit status is 0")
    func fromFlags() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let result = try await broker.hookbus([
            "publish", "--type", "client.added", "--source", "fleet",
            "--id", "c1", "--subject", "host-1", "--data", #"{"ip":"10.0.0.2"}"#,
        ])
        #expect(result.status == 0 && !result.signaled, "\(result)")
        #expect(result.stdoutLines.count == 1, "\(result)")
        let reply = try WireReply(try #require(result.stdoutLines.first))
        #expect(reply.ok && reply.id == "c1" && reply.seq != nil, "\(reply)")

        let row = try #require(try broker.outbox().row(source: "fleet", id: "c1"))
        #expect(row.seq == reply.seq)
        #expect(row.type == "client.added")
        let event = try #require(try JSONSerialization.jsonObject(with: Data(row.event.utf8)) as? [String: Any])
        #expect(event["subject"] as? String == "host-1")
        #expect((event["data"] as? [String: Any])?["ip"] as? String == "10.0.0.2")
        // The CLI's pid, not the test's: the credentials are the connecting process's.
        #expect(row.producerUID == Int64(getuid()))
        #expect(row.producerPID != Int64(getpid()))
    }

    @Test("NDJSON on stdin with one bad line: one reply per non-blank line, in order, exit status 1")
    func fromStdinWithBadLine() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let input = [
            EventLine.make(type: "a", source: "cli", id: "s1"),
            "",
            #"{"type":""}"#,
            "   ",
            EventLine.make(type: "b", source: "cli", id: "s2"),
        ].joined(separator: "\n") + "\n"
        let result = try await broker.hookbus(["publish"], stdin: Array(input.utf8))
        #expect(result.status == 1 && !result.signaled, "\(result)")
        let replies = try result.stdoutLines.map(WireReply.init)
        try #require(replies.count == 3, "\(result)")
        #expect(replies[0].ok && replies[0].id == "s1", "\(replies[0])")
        #expect(!replies[1].ok && replies[1].code == "invalid_event" && replies[1].reason == "missing_type", "\(replies[1])")
        #expect(replies[2].ok && replies[2].id == "s2", "\(replies[2])")
        #expect(try broker.outbox().rows().map(\.id) == ["s1", "s2"])
    }

    @Test("stdin's bytes go to the broker as they are: a line that is not UTF-8 is refused, not repaired and stored; a last line without \\n counts")
    func fromStdinRawBytes() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let bad = Array(#"{"type":"t","source":"cli","id":"bad","data":{"name":"caf"#.utf8) + [0xE9] + Array(#""}}"#.utf8)
        let input = Array((EventLine.make(source: "cli", id: "u1") + "\n").utf8) + bad + [0x0A]
            + Array(EventLine.make(source: "cli", id: "u2").utf8)
        let result = try await broker.hookbus(["publish"], stdin: input)
        #expect(result.status == 1 && !result.signaled, "\(result)")
        let replies = try result.stdoutLines.map(WireReply.init)
        try #require(replies.count == 3, "\(result)")
        #expect(replies[0].ok && replies[0].id == "u1", "\(replies[0])")
        #expect(!replies[1].ok && replies[1].reason == "invalid_utf8", "\(replies[1])")
        #expect(replies[2].ok && replies[2].id == "u2", "\(replies[2])")
        #expect(try broker.outbox().rows().map(\.id) == ["u1", "u2"])
    }

    @Test("stdin that cannot be read (a directory) is an error, exit status 74, not an empty input")
    func unreadableStdin() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let hookbus = try TestBinaries.hookbus().path
        let result = try await ToolRun.run(URL(fileURLWithPath: "/bin/sh"),
                                           ["-c", "exec \"$0\" publish --socket \"$1\" < \"$2\"", hookbus, broker.socketPath, scratch.root],
                                           scratch: scratch)
        #expect(!result.signaled && result.status == 74 && result.stderr.contains("reading standard input failed"), "\(result)")
    }

    @Test("NDJSON on stdin, all valid: exit status 0")
    func fromStdinAllValid() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let input = (0..<300).map { EventLine.make(source: "cli", id: "v\($0)") + "\n" }.joined()
        let result = try await broker.hookbus(["publish", "--window", "8"], stdin: Array(input.utf8))
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.count == 300)
        #expect(try broker.outbox().count() == 300)
    }

    @Test("an unreachable broker: exit status 69 and a message naming the socket")
    func unreachable() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let socket = scratch.path("nobody.sock")
        for arguments in [["--type", "t"], []] {
            let result = try await ToolRun.run(try TestBinaries.hookbus(), ["publish", "--socket", socket] + arguments,
                                               stdin: Array("{\"type\":\"t\"}\n".utf8), scratch: scratch)
            #expect(result.status == 69 && !result.signaled, "\(result)")
            #expect(result.stderr.contains(socket), "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
        }
    }
}
