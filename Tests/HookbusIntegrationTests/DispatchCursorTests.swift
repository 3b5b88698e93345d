import Foundation
import Testing

/// Where a subscriber starts: a new one after what is already stored (older
/// events are for `hookbus replay`), a known one where its cursor stopped.
@Suite("Dispatch: subscriber cursors")
struct DispatchCursorTests {
    static func subscriber(_ name: String) -> String {
        """
        [[subscribers]]
        name = "\(name)"
        types = ["cursor.*"]
        exec = ["{examples}/record.sh"]
        env = { RECORD_DIR = "{dir}/rec" }

        """
    }

    @Test("a subscriber added to the config gets only events stored after the broker first sees it; a known one resumes")
    func newSubscriberStartsAtTheEnd() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: Self.subscriber("old"))
        let first = try await bed.publish(EventLine.make(type: "cursor.event", source: "cursor", id: "c1"))
        try await bed.waitUntil("old settled through \(first)") { try bed.ledger().settled("old", through: first) }

        // Stopped, a subscriber added: the same config file, rewritten.
        try await bed.broker.stop()
        let text = try #require(bed.contents("hookbus.toml"))
        try scratch.write("hookbus.toml", text + "\n" + Self.subscriber("new")
            .replacingOccurrences(of: "{dir}", with: scratch.root)
            .replacingOccurrences(of: "{examples}", with: DispatchExamples.directory))
        try await bed.broker.restart()
        let second = try await bed.publish(EventLine.make(type: "cursor.event", source: "cursor", id: "c2"))
        try await bed.waitUntil("both settled through \(second)") {
            try bed.ledger().settled("old", through: second) && bed.ledger().settled("new", through: second)
        }

        let seqs = { (name: String) in bed.lines("rec/\(name).log").map { $0.split(separator: " ")[0] } }
        #expect(seqs("old") == ["\(first)", "\(second)"], "the known subscriber got each event once")
        #expect(seqs("new") == ["\(second)"], "the new subscriber starts after what was stored before it existed")
    }
}
