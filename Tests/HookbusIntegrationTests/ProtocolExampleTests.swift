import Foundation
import Testing

/// Replays the NDJSON examples of `protocol/examples/` against the real broker:
/// every `NAME.ndjson` that has a `NAME.expected.ndjson` beside it is sent on one
/// connection of a fresh broker, and each reply is compared with the expected
/// line of the same rank (blank lines get no reply and are skipped on both sides).
@Suite("Protocol examples")
struct ProtocolExampleTests {
    static let directory = TestBinaries.packageRoot.appendingPathComponent("protocol/examples")

    /// The example files that have expected replies, by name without extension.
    static var examples: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let inputs = names.filter { $0.hasSuffix(".ndjson") && !$0.hasSuffix(".expected.ndjson") }
            .map { String($0.dropLast(".ndjson".count)) }
        return inputs.filter { names.contains("\($0).expected.ndjson") }.sorted()
    }

    @Test("the invalid-input examples exist")
    func invalidExamplesExist() {
        #expect(Self.examples.contains("invalid"),
                "protocol/examples/invalid.ndjson and invalid.expected.ndjson are missing from \(Self.directory.path)")
    }

    /// What an expected line asks for: a whole reply (`{"ok":...}`), or just the
    /// refusal (`{"code":"...","reason":"...","attribute":"..."}`).
    struct Expectation: Sendable, CustomStringConvertible {
        var ok: Bool
        var code: String?
        var reason: String?
        var attribute: String?
        var op: String?
        var seq: Int64?
        var id: String?
        var duplicate: Bool?
        var description: String

        init(_ line: [UInt8]) throws {
            description = String(decoding: line, as: UTF8.self)
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw HarnessError("expected line is not a JSON object: \(description)")
            }
            if object["ok"] != nil {
                let reply = try WireReply(description)
                (ok, code, reason, attribute, op, seq, id, duplicate) =
                    (reply.ok, reply.code, reply.reason, reply.attribute, reply.op, reply.seq, reply.id, reply.duplicate)
            } else {
                guard let code = object["code"] as? String else {
                    throw HarnessError("expected line has neither ok nor code: \(description)")
                }
                (ok, self.code, reason, attribute) = (false, code, object["reason"] as? String, object["attribute"] as? String)
            }
        }
    }

    @Test("each example file gets the replies its .expected.ndjson lists", arguments: examples)
    func replay(_ name: String) async throws {
        let input = try Self.lines(of: "\(name).ndjson")
        let expected = try Self.lines(of: "\(name).expected.ndjson").map(Expectation.init)
        try #require(input.count == expected.count,
                     "\(name).ndjson has \(input.count) non-blank lines but \(name).expected.ndjson has \(expected.count)")

        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let client = try broker.connect()
        try client.write(input.flatMap { $0 + [0x0A] })

        for (rank, (line, want)) in zip(input, expected).enumerated() {
            let got = try client.nextReply()
            let label = "\(name).ndjson line \(rank + 1) \(String(decoding: line.prefix(80), as: UTF8.self))"
            #expect(got.ok == want.ok, "\(label): got \(got), expected \(want)")
            if want.code != nil { #expect(got.code == want.code, "\(label): got \(got), expected \(want)") }
            if want.reason != nil { #expect(got.reason == want.reason, "\(label): got \(got), expected \(want)") }
            if want.attribute != nil { #expect(got.attribute == want.attribute, "\(label): got \(got), expected \(want)") }
            if want.op != nil { #expect(got.op == want.op, "\(label): got \(got), expected \(want)") }
            // Seqs are not compared: the broker's own hookbus.started event may take any of them.
            if want.seq != nil { #expect(got.seq != nil, "\(label): got \(got), expected \(want)") }
            if let duplicate = want.duplicate { #expect(got.duplicate == duplicate, "\(label): got \(got), expected \(want)") }
            if want.id != nil && Self.hasID(line) { #expect(got.id == want.id, "\(label): got \(got), expected \(want)") }
        }
        #expect(try client.call(#"{"op":"ping"}"#).ok, "the connection stopped working after \(name).ndjson")
    }

    /// Example files without an `.expected.ndjson`: examples of what the broker accepts.
    static var acceptedExamples: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".ndjson") && !$0.hasSuffix(".expected.ndjson") }
            .map { String($0.dropLast(".ndjson".count)) }
            .filter { !names.contains("\($0).expected.ndjson") }
            .sorted()
    }

    @Test("an example file without .expected.ndjson is accepted line by line and stored", arguments: acceptedExamples)
    func replayAccepted(_ name: String) async throws {
        let input = try Self.lines(of: "\(name).ndjson")
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let client = try broker.connect()
        try client.write(input.flatMap { $0 + [0x0A] })
        var published = 0
        for (rank, line) in input.enumerated() {
            let got = try client.nextReply()
            #expect(got.ok, "\(name).ndjson line \(rank + 1) \(String(decoding: line.prefix(80), as: UTF8.self)): \(got)")
            if got.seq != nil { published += 1 }
        }
        #expect(try broker.outbox().count() == published)
    }

    /// The non-blank lines of an example file, as bytes (some are not valid UTF-8 on purpose).
    static func lines(of file: String) throws -> [[UInt8]] {
        let url = directory.appendingPathComponent(file)
        guard let data = FileManager.default.contents(atPath: url.path) else { throw HarnessError("cannot read \(url.path)") }
        return Array(data).split(separator: 0x0A, omittingEmptySubsequences: true).map(Array.init)
            .filter { line in !line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }
    }

    /// True if the line is an object with its own `id` (the reply's id is then predictable).
    static func hasID(_ line: [UInt8]) -> Bool {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return false }
        return object["id"] is String
    }
}
