import Foundation
import Testing

/// Every kind of bad input is refused with its own code and reason, on one
/// connection that goes on storing the valid events sent between them.
@Suite("Bad input")
struct BadInputTests {
    /// A line the broker must refuse, and how.
    struct BadLine: Sendable {
        var bytes: [UInt8]
        var code: String
        var reason: String
        /// The attribute the error must name (in `attribute` and in `message`).
        var attribute: String?

        init(_ text: String, _ code: String, _ reason: String, attribute: String? = nil) {
            self.init(bytes: Array(text.utf8), code, reason, attribute: attribute)
        }

        init(bytes: [UInt8], _ code: String, _ reason: String, attribute: String? = nil) {
            self.bytes = bytes
            self.code = code
            self.reason = reason
            self.attribute = attribute
        }
    }

    /// `max_line_bytes` for the suite's broker: small, so the oversized line is small too.
    static let maxLineBytes = 1024

    static let badLines: [BadLine] = [
        BadLine(#"{"type":"t","#, "invalid_json", "invalid_json"),
        BadLine("not json at all", "invalid_json", "invalid_json"),
        BadLine(bytes: Array(#"{"type":"caf"#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8), "invalid_json", "invalid_utf8"),
        BadLine("[1,2,3]", "invalid_event", "not_object"),
        BadLine(#""just a string""#, "invalid_event", "not_object"),
        BadLine(#"{"source":"bad","id":"x1"}"#, "invalid_event", "missing_type", attribute: "type"),
        BadLine(#"{"type":""}"#, "invalid_event", "missing_type", attribute: "type"),
        BadLine(#"{"type":42}"#, "invalid_event", "wrong_type", attribute: "type"),
        BadLine(#"{"type":"t","specversion":"0.3"}"#, "invalid_event", "bad_specversion", attribute: "specversion"),
        BadLine(#"{"type":"t","data":{"a":1},"data_base64":"AAAA"}"#, "invalid_event", "data_conflict", attribute: "data_base64"),
        BadLine(#"{"type":"t","data_base64":"not base64!"}"#, "invalid_event", "bad_base64", attribute: "data_base64"),
        BadLine(#"{"type":"t","Bad-Name":"x"}"#, "invalid_event", "bad_extension_name", attribute: "Bad-Name"),
        BadLine(#"{"type":"t","waytoolongextensionname1":"x"}"#, "invalid_event", "bad_extension_name",
                attribute: "waytoolongextensionname1"),
        BadLine(#"{"type":"t","tenant":{"a":1}}"#, "invalid_event", "wrong_type", attribute: "tenant"),
        BadLine(#"{"type":"t","subject":7}"#, "invalid_event", "wrong_type", attribute: "subject"),
        BadLine(#"{"type":"t","time":"yesterday"}"#, "invalid_event", "bad_time", attribute: "time"),
        BadLine(#"{"type":"t","id":""}"#, "invalid_event", "empty_attribute", attribute: "id"),
        BadLine(#"{"type":"t","type":"u"}"#, "invalid_event", "duplicate_attribute", attribute: "type"),
        BadLine(#"{"op":"no.such.op"}"#, "unknown_op", "unknown_op", attribute: "op"),
        BadLine(#"{"op":5}"#, "bad_request", "wrong_type", attribute: "op"),
        BadLine(#"{"type":"big","data":""# + String(repeating: "x", count: 2 * maxLineBytes) + #""}"#, "too_large", "too_large"),
    ]

    @Test("each bad line gets its code, in order, and the valid events between them are stored")
    func oneConnectionKeepsWorking() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let config = try scratch.write("hookbus.toml", "max_line_bytes = \(Self.maxLineBytes)\n")
        let broker = try await scratch.startBroker(config: config)
        let client = try broker.connect()

        // bad, good, bad, good, ... with blank lines (no reply) and a CRLF line in between,
        // all written at once: the replies must come back one per line, in order.
        var stream: [UInt8] = []
        for (index, bad) in Self.badLines.enumerated() {
            stream += bad.bytes + [0x0A]
            if index % 5 == 0 { stream += Array("\n   \r\n".utf8) }
            let good = EventLine.make(type: "good", source: "bad-input", id: "g\(index)")
            stream += Array(good.utf8) + (index % 2 == 0 ? [0x0D, 0x0A] : [0x0A])
        }
        try client.write(stream)

        var seqs: [Int64] = []
        for (index, bad) in Self.badLines.enumerated() {
            let label = String(decoding: bad.bytes.prefix(60), as: UTF8.self)
            let refusal = try client.nextReply()
            #expect(!refusal.ok, "line \(index) \(label) was accepted: \(refusal)")
            #expect(refusal.code == bad.code, "line \(index) \(label): \(refusal)")
            #expect(refusal.reason == bad.reason, "line \(index) \(label): \(refusal)")
            #expect(refusal.message?.isEmpty == false, "line \(index) \(label): no message: \(refusal)")
            if let attribute = bad.attribute {
                #expect(refusal.attribute == attribute, "line \(index) \(label): \(refusal)")
                #expect(refusal.message?.contains(attribute) == true, "line \(index) \(label): message does not name \(attribute): \(refusal)")
            }
            let accepted = try client.nextReply()
            #expect(accepted.ok && accepted.id == "g\(index)", "the valid event after line \(index) \(label): \(accepted)\n\(broker.log)")
            if let seq = accepted.seq { seqs.append(seq) }
        }
        #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 }, "\(seqs)")

        // Still serving on the same connection, and nothing else arrived.
        #expect(try client.call(#"{"op":"ping"}"#).ok)
        let stored = try broker.outbox().rows()
        #expect(stored.map(\.id) == Self.badLines.indices.map { "g\($0)" }, "only the valid events are stored, in order")
        #expect(stored.map(\.seq) == seqs)
    }

    @Test("commands quote what they refuse cut to 40 characters: a type filter, a subscriber name")
    func refusedValuesAreClipped() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let long = String(repeating: "Q", count: 100)
        for line in [
            #"{"op":"subscribe","types":["\#(long)*"]}"#,
            #"{"op":"replay","from_seq":1,"subscribers":["\#(long)"]}"#,
            #"{"op":"dlq.retry","all":true,"subscriber":"\#(long)"}"#,
        ] {
            let reply = try broker.connect().call(line)
            #expect(!reply.ok && reply.message?.contains(String(repeating: "Q", count: 40) + "…") == true
                    && reply.message?.contains(String(repeating: "Q", count: 41)) == false, "\(reply)")
        }
    }

    @Test("with the default limit, a line over 1 MiB is refused with too_large and the next line is stored")
    func defaultLineLimit() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let client = try broker.connect()

        let big = #"{"type":"big","data":""# + String(repeating: "y", count: (1 << 20) + 100) + #""}"#
        // Written by a thread: a refused line's bytes are still read and skipped,
        // while this thread reads the replies.
        let socketClient = UncheckedBox(client)
        async let written: [Void] = onThreads(1) { _ in
            try socketClient.value.send(line: big)
            try socketClient.value.send(line: EventLine.make(source: "limit", id: "after-big"))
        }
        let refusal = try client.nextReply()
        #expect(refusal.code == "too_large" && refusal.reason == "too_large", "\(refusal)")
        let accepted = try client.nextReply()
        #expect(accepted.ok && accepted.id == "after-big", "\(accepted)")
        _ = try await written
        #expect(try broker.outbox().count() == 1)
    }
}
