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
}
