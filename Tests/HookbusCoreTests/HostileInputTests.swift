import Foundation
import Synchronization
import HookbusTestSupport
import Testing
@testable import HookbusCore

/// Hostile lines through the whole decoder (`RequestDecoder`: framing limits,
/// `JSONScanner`, `EventValidator`), as issue 6 lists them: random bytes,
/// truncated UTF-8, 10,000-deep nesting, huge numbers, duplicate keys, NUL
/// bytes, and a valid event cut at every offset. None may crash or hang; each
/// gets a defined outcome, and every refusal a code of the protocol with a
/// reason and a short message that does not echo the payload.
///
/// Seeded where random, so a failure reproduces; a failing line is shown in hex.
@Suite("Hostile input: decoder", .timeLimit(.minutes(2)))
struct HostileInputTests {
    /// The refusals a line on its own can earn (`too_large` comes from the framer,
    /// `unauthorized` and `unavailable` from later stages).
    static let lineCodes: Set<ErrorCode> = [.invalidJSON, .invalidEvent, .badRequest]
    /// Messages quote at most a clipped value: far below any payload here.
    static let maxMessageBytes = 512

    /// The outcome of one hostile line, checked for the properties every line must have.
    enum Outcome: Equatable {
        case published
        case command(String)
        case refused(ErrorCode, String)

        var code: ErrorCode? {
            if case .refused(let code, _) = self { return code }
            return nil
        }

        var reason: String? {
            if case .refused(_, let reason) = self { return reason }
            return nil
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let shown = bytes.prefix(96).map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
        return bytes.count > 96 ? "\(shown)… (\(bytes.count) bytes)" : shown
    }

    /// Decodes `line` and checks what must hold whatever it holds.
    @discardableResult
    static func check(_ line: [UInt8], _ what: @autoclosure () -> String = "", counter: HostileCounter) -> Outcome {
        counter.count()
        switch decode(line) {
        case .publish(let event):
            #expect(!event.type.isEmpty && !event.id.isEmpty && !event.source.isEmpty, "\(what()) \(hex(line))")
            // What would be stored is still one JSON object, by the broker's own strict account.
            if case .object? = try? JSONScanner.scan(event.json) {} else {
                Issue.record("stored JSON does not scan as an object: \(what()) \(hex(event.json))")
            }
            return .published
        case .command(let command):
            #expect(command.line == line)
            return .command(command.op)
        case .refused(let error):
            #expect(lineCodes.contains(error.code), "\(what()): \(error.code) for \(hex(line))")
            #expect(!error.reason.isEmpty && !error.message.isEmpty, "\(what()) \(hex(line))")
            #expect(error.message.utf8.count <= maxMessageBytes, "\(what()): a \(error.message.utf8.count)-byte message")
            return .refused(error.code, error.reason)
        }
    }

    /// Lines with a multi-byte character in the type, a key, an extension and data.
    static let unicodeEvent = #"{"type":"caf\#u{E9}.\#u{1F600}","source":"src-\#u{4E2D}","id":"i1","region":"\#u{4E2D}\#u{6587}","data":{"k\#u{E9}y":"v\#u{1F600}\u00e9"}}"#

    static let validEvents: [String] = [
        #"{"type":"client.added","source":"fleet","id":"c1","data":{"ip":"10.0.0.2","hostname":"h1","fleet":"f"}}"#,
        #"{"specversion":"1.0","type":"client.removed","time":"2026-11-23T05:30:00.25+01:00","subject":"h","prio":3,"flag":false,"data":[1,-2.5e3,true,null,{"a":[{}]}]}"#,
        #"{"type":"x.y","data_base64":"aGVsbG8gd29ybGQ=","region":"eu"}"#,
        #"{"type":"esc.aped","data":"line\nwith \"quotes\" \\ \/ \b\f\r\t \u0041\ud83d\ude00"}"#,
        unicodeEvent,
    ]

    @Test("5,000 strings of random bytes, each decoded and framed in random chunks")
    func randomBytes() {
        let counter = HostileCounter()
        var random = SplitMix64(seed: 0x6057_1AE0_0001)
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...300, using: &random)
            let line = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            Self.check(line, "random bytes", counter: counter)
            // The same bytes as a stream: every frame is bounded, whatever the chunking.
            var framer = LineFramer(maxLineBytes: 64)
            var frames: [Frame] = []
            var rest = line[...]
            while !rest.isEmpty {
                let take = Int.random(in: 1...max(1, rest.count), using: &random)
                frames += framer.feed(Array(rest.prefix(take)))
                rest = rest.dropFirst(take)
                #expect(framer.bufferedBytes <= 65)
            }
            framer.finish(into: &frames)
            for case .line(let bytes) in frames {
                #expect(bytes.count <= 64 && !bytes.contains(0x0A))
            }
        }
        HostileFigures.record("random bytes", counter.value)
    }

    @Test("truncated, overlong, surrogate and out-of-range UTF-8 anywhere in a line is refused as invalid_utf8")
    func brokenUTF8() {
        let counter = HostileCounter()
        let line = Array(Self.unicodeEvent.utf8)
        // Every multi-byte character, cut after each of its leading bytes, the rest of the line kept.
        var index = 0
        var truncations = 0
        while index < line.count {
            let lead = line[index]
            let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if length > 1 {
                for keep in 1..<length {
                    let cut = Array(line[..<(index + keep)]) + Array(line[(index + length)...])
                    let outcome = Self.check(cut, "character at \(index) cut to \(keep) bytes", counter: counter)
                    #expect(outcome == .refused(.invalidJSON, "invalid_utf8"), "character at \(index) cut to \(keep) bytes")
                    // And cut at the end of the line, the rest lost.
                    let end = Self.check(Array(line[..<(index + keep)]), "line ending inside a character", counter: counter)
                    #expect(end == .refused(.invalidJSON, "invalid_utf8"))
                    truncations += 1
                }
            }
            index += length
        }
        #expect(truncations >= 10)

        let broken: [[UInt8]] = [
            [0x80], [0xBF], [0x80, 0x80],              // lone continuation bytes
            [0xC0, 0x80], [0xC1, 0xBF],                // overlong two-byte forms (NUL, '?')
            [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF],    // overlong three-byte forms
            [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],
            [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],    // UTF-16 surrogates encoded
            [0xF4, 0x90, 0x80, 0x80],                  // past U+10FFFF
            [0xF5, 0x80, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xFC, 0x84, 0x80, 0x80, 0x80, 0x80],
            [0xFE], [0xFF], [0xC2], [0xE2, 0x82], [0xF0, 0x9F, 0x98],  // leads without their continuation
        ]
        // Where the bad bytes go: inside a string value, a key, the type, and between tokens.
        let places: [(String, String)] = [
            (#"{"type":"t.x","data":"a"#, #"b"}"#),
            (#"{"type":"t.x","data":{"k"#, #"":1}}"#),
            (#"{"type":"t."#, #"x"}"#),
            (#"{"type":"t.x","#, #""data":1}"#),
            (#"{"op":"ping","x":""#, #""}"#),
        ]
        for bytes in broken {
            for (before, after) in places {
                let line = Array(before.utf8) + bytes + Array(after.utf8)
                #expect(Self.check(line, "broken UTF-8", counter: counter) == .refused(.invalidJSON, "invalid_utf8"), "\(Self.hex(line))")
            }
        }
        HostileFigures.record("broken UTF-8", counter.value)
    }

    @Test("nesting 257 to 100,000 deep, closed or not, at the top, in data, in an extension or a command: invalid_json, nesting")
    func deepNesting() {
        let counter = HostileCounter()
        for depth in [JSONScanner.maxDepth + 1, 1_000, 10_000, 100_000] {
            let arrays = String(repeating: "[", count: depth)
            let objects = String(repeating: #"{"a":"#, count: depth)
            let mixed = String(repeating: #"[{"a":"#, count: depth / 2)
            let lines: [(String, String)] = [
                ("top-level arrays", arrays + String(repeating: "]", count: depth)),
                ("top-level arrays, unclosed", arrays),
                ("top-level objects", objects + "1" + String(repeating: "}", count: depth)),
                ("data arrays", #"{"type":"t.x","data":"# + arrays + String(repeating: "]", count: depth) + "}"),
                ("data objects, unclosed", #"{"type":"t.x","data":"# + objects),
                ("data mixed", #"{"type":"t.x","data":"# + mixed + "0" + String(repeating: "}]", count: depth / 2) + "}"),
                ("extension", #"{"type":"t.x","ext":"# + arrays + String(repeating: "]", count: depth) + "}"),
                ("command", #"{"op":"replay","types":"# + arrays + String(repeating: "]", count: depth) + "}"),
            ]
            for (what, text) in lines {
                let outcome = Self.check(Array(text.utf8), "\(what), depth \(depth)", counter: counter)
                #expect(outcome.code == .invalidJSON && outcome.reason == "invalid_json", "\(what), depth \(depth): \(outcome)")
                do {
                    _ = try JSONScanner.scan(Array(text.utf8))
                } catch {
                    #expect(error.reason.contains("nesting"), "\(what), depth \(depth): \(error.reason)")
                }
            }
        }
        HostileFigures.record("deep nesting", counter.value)
    }

    static let hugeNumbers: [String] = [
        "1e999999", "-1e999999", "1E+999999999999999999999", "1e-999999", "-0.0e-0",
        String(repeating: "9", count: 400), "-" + String(repeating: "1", count: 400),
        "0." + String(repeating: "0", count: 10_000) + "1", String(repeating: "7", count: 10_000) + ".5e-12345",
        "18446744073709551616", "-9223372036854775809", "1.7976931348623157e309", "4.9e-325",
    ]

    static let badNumbers: [String] = [
        "01", "00", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "1E-", "--1", "1.2.3", "0x10", "1_000",
        "NaN", "nan", "Infinity", "-Infinity", "inf", "1e999999x", String(repeating: "9", count: 400) + ".",
    ]

    @Test("huge numbers in data and in an extension are stored verbatim; malformed numbers are invalid_json; numbers in string attributes are wrong_type")
    func hugeNumbers() throws {
        let counter = HostileCounter()
        for number in Self.hugeNumbers {
            for (what, text) in [
                ("data", #"{"type":"t.x","data":\#(number)}"#),
                ("data member", #"{"type":"t.x","data":{"n":\#(number)}}"#),
                ("data array", #"{"type":"t.x","data":[\#(number),\#(number)]}"#),
                ("extension", #"{"type":"t.x","big":\#(number)}"#),
            ] {
                let line = Array(text.utf8)
                let outcome = Self.check(line, "\(what) \(number.prefix(20))", counter: counter)
                #expect(outcome == .published, "\(what) \(number.prefix(20)): \(outcome)")
                // Stored as sent: not rounded to infinity, zero or a shorter form.
                if case .publish(let event) = decode(line) {
                    let stored = String(decoding: event.json, as: UTF8.self)
                    #expect(stored.contains(number), "\(what) \(number.prefix(20)) was not stored verbatim")
                }
            }
            for attribute in ["type", "id", "source", "time", "specversion"] {
                let text = attribute == "type" ? #"{"type":\#(number)}"# : #"{"type":"t.x","\#(attribute)":\#(number)}"#
                let outcome = Self.check(Array(text.utf8), "\(attribute) as a number", counter: counter)
                #expect(outcome == .refused(.invalidEvent, "wrong_type"), "\(attribute) = \(number.prefix(20)): \(outcome)")
            }
        }
        for number in Self.badNumbers {
            for text in [#"{"type":"t.x","data":\#(number)}"#, #"{"type":"t.x","big":\#(number)}"#, #"{"op":"replay","from_seq":\#(number)}"#] {
                let outcome = Self.check(Array(text.utf8), "malformed number \(number.prefix(20))", counter: counter)
                #expect(outcome == .refused(.invalidJSON, "invalid_json"), "\(text.prefix(60)): \(outcome)")
            }
        }
        HostileFigures.record("huge and malformed numbers", counter.value)
    }

    @Test("duplicate attributes are invalid_event duplicate_attribute; duplicates inside data are the producer's business")
    func duplicateKeys() {
        let counter = HostileCounter()
        let refused: [String] = [
            #"{"type":"t.x","type":"t.x"}"#,
            #"{"type":"t.x","type":"t.y"}"#,
            #"{"type":"t.x","id":"a","id":"b"}"#,
            #"{"type":"t.x","source":"a","source":"a"}"#,
            #"{"type":"t.x","data":1,"data":2}"#,
            #"{"type":"t.x","data_base64":"AA==","data_base64":"AA=="}"#,
            #"{"type":"t.x","ext":1,"ext":"1"}"#,
            #"{"type":"t.x","time":"2026-11-23T04:30:00Z","time":"2026-11-23T04:30:00Z"}"#,
            #"{"type":"t.x","t\u0079pe":"t.y"}"#,  // the same key spelled with an escape
            "{\"type\":\"t.x\"," + Array(repeating: #""e":1"#, count: 1_000).joined(separator: ",") + "}",
        ]
        for text in refused {
            let outcome = Self.check(Array(text.utf8), "duplicate", counter: counter)
            #expect(outcome == .refused(.invalidEvent, "duplicate_attribute"), "\(text.prefix(80)): \(outcome)")
        }
        let accepted: [String] = [
            #"{"type":"t.x","data":{"a":1,"a":2}}"#,
            #"{"type":"t.x","data":[{"k":1,"k":1},{"k":2}]}"#,
            "{\"type\":\"t.x\",\"data\":{" + Array(repeating: #""d":0"#, count: 1_000).joined(separator: ",") + "}}",
        ]
        for text in accepted {
            #expect(Self.check(Array(text.utf8), "duplicate in data", counter: counter) == .published, "\(text.prefix(80))")
        }
        // A command with `op` twice is still one command, decided by its first `op`;
        // a bad one is refused, never stored.
        for text in [#"{"op":"ping","op":"stats"}"#, #"{"op":"ping","op":1}"#, #"{"op":1,"op":"ping"}"#, #"{"type":"t.x","op":"ping"}"#] {
            let outcome = Self.check(Array(text.utf8), "op twice", counter: counter)
            switch outcome {
            case .command, .refused(.badRequest, _): break
            default: Issue.record("\(text): \(outcome)")
            }
        }
        HostileFigures.record("duplicate keys", counter.value)
    }

    @Test("NUL bytes: raw ones are invalid_json wherever they are; \\u0000 in data is data, in an attribute it is refused")
    func nulBytes() {
        let counter = HostileCounter()
        let event = Array(#"{"type":"t.x","source":"s","id":"n1","data":{"k":"v"}}"#.utf8)
        // A raw NUL at every offset of a valid event.
        for offset in 0...event.count {
            var line = event
            line.insert(0, at: offset)
            let outcome = Self.check(line, "NUL at \(offset)", counter: counter)
            #expect(outcome == .refused(.invalidJSON, "invalid_json"), "NUL at \(offset): \(outcome)")
        }
        for text in [[UInt8](repeating: 0, count: 1), [UInt8](repeating: 0, count: 4096), Array("\0{}".utf8), Array("{}\0".utf8)] {
            #expect(Self.check(text, "NULs", counter: counter) == .refused(.invalidJSON, "invalid_json"))
        }
        // Inside data an escaped NUL is data; in a string attribute CloudEvents forbids it.
        for text in [#"{"type":"t.x","data":"a\u0000b"}"#, #"{"type":"t.x","data":{"\u0000":"\u0000"}}"#] {
            #expect(Self.check(Array(text.utf8), "escaped NUL", counter: counter) == .published, "\(text)")
        }
        let inSubject = #"{"type":"t.x","subject":"\u0000"}"#
        #expect(Self.check(Array(inSubject.utf8), "escaped NUL in subject", counter: counter) == .refused(.invalidEvent, "bad_character"))
        HostileFigures.record("NUL bytes", counter.value)
    }

    @Test("control characters in type, id or source are refused (CloudEvents 1.0: a String has no U+0000-U+001F, U+007F-U+009F)")
    func controlCharactersInAttributes() {
        let counter = HostileCounter()
        // An exec subscriber sees HOOKBUS_EVENT_TYPE and HOOKBUS_EVENT_ID cut at the NUL
        // (execve cannot carry it), and a newline breaks any line-oriented log of them.
        let lines = [
            #"{"type":"client.added\u0000evil","data":{}}"#,
            #"{"type":"t.x","id":"a\u0000b"}"#,
            #"{"type":"t.x","source":"s\u0000"}"#,
            #"{"type":"t\nx"}"#,
            #"{"type":"t.x","id":"line\u000abreak"}"#,
            #"{"type":"t.x\u007f"}"#,
            #"{"type":"t.x\u0085"}"#,
        ]
        for text in lines {
            let outcome = Self.check(Array(text.utf8), "control character", counter: counter)
            #expect(outcome.code == .invalidEvent, "\(text): \(outcome)")
        }
    }

    @Test("valid events cut at every offset (the end or the start lost) are refused, and the framer reassembles them split at every offset")
    func cutAtEveryOffset() {
        let counter = HostileCounter()
        for text in Self.validEvents {
            let line = Array(text.utf8)
            #expect(Self.check(line, "the whole event", counter: counter) == .published, "\(text)")
            for offset in 0..<line.count {
                let head = Self.check(Array(line[..<offset]), "first \(offset) bytes", counter: counter)
                #expect(head.code == .invalidJSON, "\(text) cut to \(offset) bytes: \(head)")
                if offset > 0 {
                    let tail = Self.check(Array(line[offset...]), "from byte \(offset)", counter: counter)
                    #expect(tail.code == .invalidJSON || tail.code == .invalidEvent, "\(text) from byte \(offset): \(tail)")
                }
                // Two reads, split at `offset`: one frame, the event itself.
                var framer = LineFramer(maxLineBytes: 1 << 20)
                let frames = framer.feed(Array(line[..<offset])) + framer.feed(Array(line[offset...]) + [0x0A])
                #expect(frames == [.line(line)], "\(text) split at \(offset)")
                counter.count()
            }
        }
        HostileFigures.record("cut at every offset", counter.value)
    }
}

/// How many cases a test ran, for the figures of the issue's closing note.
final class HostileCounter: Sendable {
    private let atomic = Atomic<Int>(0)
    var value: Int { atomic.load(ordering: .relaxed) }
    func count() { atomic.add(1, ordering: .relaxed) }
}

/// Appends `<what>: <n> cases` to the file named by `HOOKBUS_TEST_FIGURES`, when set.
enum HostileFigures {
    static func record(_ what: String, _ cases: Int) {
        guard let path = ProcessInfo.processInfo.environment["HOOKBUS_TEST_FIGURES"], !path.isEmpty else { return }
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(Data("hostile input, \(what): \(cases) cases\n".utf8))
        try? handle.close()
    }
}
