import Foundation
import Testing

/// `hookbus tail`: an unnamed, live-only subscription that prints events as they come.
@Suite("Operator: hookbus tail")
struct OperatorTailTests {
    @Test("tail --limit prints the events published after it started, and only those; --type filters; --json prints the event")
    func printsLiveEvents() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let before = try await bed.publish(EventLine.make(type: "tail.a", source: "t", id: "old"))

        let hookbus = try TestBinaries.hookbus()
        let socket = bed.broker.socketPath
        let all = try BackgroundTool(hookbus, ["tail", "--limit", "3", "--socket", socket], scratch: scratch)
        defer { all.stop() }
        let onlyB = try BackgroundTool(hookbus, ["tail", "--type", "tail.b", "--limit", "1", "--json", "--socket", socket], scratch: scratch)
        defer { onlyB.stop() }
        // Both have subscribed once the broker lists two ephemeral socket subscribers.
        try await bed.waitUntil("two tails subscribed (stats lists them)") {
            try bed.connectedSocketSubscribers().filter { $0.hasPrefix("~ephemeral-") }.count == 2
        }

        let seqs = try await bed.publish([
            EventLine.make(type: "tail.a", source: "t", id: "new-1", data: #"{"k":"v"}"#),
            EventLine.make(type: "tail.b", source: "t", id: "new-2", data: #"[1,2]"#),
            EventLine.make(type: "tail.a", source: "t", id: "new-3", data: "7"),
        ])

        let printed = try await all.finished()
        #expect(printed.status == 0 && !printed.signaled, "\(printed)")
        // "<seq> <time> <type> <source> <id> <data>", one line per event, in seq order.
        let lines = printed.stdoutLines.map { $0.split(separator: " ", maxSplits: 5).map(String.init) }
        try #require(lines.count == 3 && lines.allSatisfy { $0.count == 6 }, "\(printed)")
        #expect(lines.map { Int64($0[0]) } == seqs, "\(printed)")
        #expect(lines.map { $0[2] } == ["tail.a", "tail.b", "tail.a"])
        #expect(lines.map { $0[3] } == ["t", "t", "t"])
        #expect(lines.map { $0[4] } == ["new-1", "new-2", "new-3"])
        #expect(lines.map { $0[5] } == [#"{"k":"v"}"#, "[1,2]", "7"])
        #expect(!printed.stdout.contains("old"), "seq \(before), stored before tail started, is not live")

        let filtered = try await onlyB.finished()
        #expect(filtered.status == 0, "\(filtered)")
        try #require(filtered.stdoutLines.count == 1, "\(filtered)")
        let event = try JSONText.object(filtered.stdoutLines[0])
        #expect(event["type"] as? String == "tail.b" && event["id"] as? String == "new-2" && event["source"] as? String == "t")
        #expect(JSONText.ints(event["data"]) == [1, 2])

        // Tails leave no trace: their subscriptions are gone with them.
        try await bed.waitUntil("the tails' subscriptions released") { try bed.connectedSocketSubscribers().isEmpty }
    }

    @Test("tail --from-seq starts with stored events")
    func fromSeq() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let seqs = try await bed.publish([
            EventLine.make(type: "tail.a", source: "t", id: "s-1"),
            EventLine.make(type: "tail.b", source: "t", id: "s-2"),
            EventLine.make(type: "tail.a", source: "t", id: "s-3"),
        ])
        let result = try await bed.cli("tail", "--from-seq", "\(seqs[1])", "--type", "tail.*", "--limit", "2")
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.compactMap { $0.split(separator: " ").first.flatMap { Int64($0) } } == [seqs[1], seqs[2]], "\(result)")
        #expect(result.stdoutLines.map { $0.split(separator: " ")[4] } == ["s-2", "s-3"], "\(result)")
    }

    @Test("tail prints an event's bytes as stored (--json) and its data as sent (text), numbers like 1.0 and 1e400 included")
    func rawBytes() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let data = #"{"x":1.0,"big":1e400,"z":"\u00e9"}"#
        let seq = try await bed.publish(EventLine.make(type: "tail.raw", source: "t", id: "r-1", data: data))
        let stored = try #require(try bed.broker.outbox().row(source: "t", id: "r-1"))
        let json = try await bed.cli("tail", "--from-seq", "\(seq)", "--limit", "1", "--json")
        #expect(json.status == 0 && json.stdoutLines == [stored.event], "\(json)")
        let text = try await bed.cli("tail", "--from-seq", "\(seq)", "--limit", "1")
        #expect(text.status == 0 && text.stdoutLines.first?.hasSuffix(" tail.raw t r-1 \(data)") == true, "\(text)")
    }

    @Test("tail says so, exit status 69, when the broker closes the connection before --limit events")
    func brokerGoes() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let tail = try BackgroundTool(try TestBinaries.hookbus(), ["tail", "--limit", "5", "--socket", bed.broker.socketPath], scratch: scratch)
        defer { tail.stop() }
        try await bed.waitUntil("tail subscribed") { try bed.connectedSocketSubscribers().count == 1 }
        _ = try await bed.publish(EventLine.make(type: "tail.a", source: "t", id: "g-1"))
        try await bed.waitUntil("tail acknowledged the event") {
            try bed.stats().values.contains { $0.kind == "socket" && $0.delivered == 1 }
        }
        #expect(try await bed.broker.stop() == 0)
        let ended = try await tail.finished()
        #expect(!ended.signaled && ended.status == 69, "\(ended)")
        #expect(ended.stdoutLines.count == 1 && ended.stderr.contains("closed the connection after 1 event(s)"), "\(ended)")
    }

    @Test("an unnamed subscription that ends with deliveries unacknowledged leaves no dead letter and announces none, even at max_attempts = 1")
    func endLeavesNoDeadLetters() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, defaults: "[defaults]\nmax_attempts = 1\ntimeout = \"20s\"", subscribers: "")
        let session = try SocketSession(bed.broker.socketPath)
        try #require(try await onThread { try session.subscribe(name: nil, types: ["tail.*"], window: 8) }.ok)
        let seqs = try await bed.publish((0..<3).map { EventLine.make(type: "tail.a", source: "t", id: "u-\($0)") })
        let got = try await onThread { try (0..<3).map { _ in try session.nextDelivery().seq } }
        #expect(got == seqs)
        session.disconnect()
        try await bed.waitUntil("the subscription released") { try bed.connectedSocketSubscribers().isEmpty }
        #expect(try bed.ledger().deadLetterCount() == 0)
        #expect(try bed.ledger().retryRowCount() == 0, "nothing recorded for a subscription that has gone")
        #expect(try bed.broker.outbox().rows().filter { $0.type == "hookbus.dead_lettered" }.isEmpty)
    }
}
