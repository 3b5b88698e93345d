import Foundation
import Testing
@testable import HookbusCore

/// Reply lines as DESIGN.md "Wire protocol" shows them, byte for byte.
@Suite("Replies and JSONWriter")
struct ReplyTests {
    private static func text(_ write: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        write(&writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    @Test("stored and duplicate replies")
    func published() {
        #expect(Self.text { Reply.published(.stored(seq: 42, id: "c1"), into: &$0) } == #"{"ok":true,"seq":42,"id":"c1"}"# + "\n")
        #expect(Self.text { Reply.published(.duplicate(seq: 42, id: "c1"), into: &$0) }
            == #"{"ok":true,"seq":42,"id":"c1","duplicate":true}"# + "\n")
    }

    @Test("a refusal carries code, reason, attribute when there is one, and message")
    func refused() throws {
        let error = WireError(.invalidEvent, "missing_type", attribute: "type", "missing required attribute 'type'")
        #expect(Self.text { Reply.error(error, into: &$0) }
            == #"{"ok":false,"error":{"code":"invalid_event","reason":"missing_type","attribute":"type","message":"missing required attribute 'type'"}}"# + "\n")
        let bare = WireError(.tooLarge, "too_large", "line \"x\" too long")
        let line = Self.text { Reply.error(bare, into: &$0) }
        let object = try #require(foundationJSON(Array(line.utf8)) as? [String: Any])
        let inner = try #require(object["error"] as? [String: Any])
        #expect(inner["attribute"] == nil)
        #expect(inner["message"] as? String == "line \"x\" too long")
    }

    @Test("command replies and several replies in one buffer")
    func okReplies() {
        let text = Self.text {
            Reply.ok(op: "ping", into: &$0)
            Reply.ok(op: "stats", into: &$0) { writer in
                writer.key("events"); writer.int(3)
                writer.key("subscribers"); writer.beginArray(); writer.string("a"); writer.string("b"); writer.endArray()
            }
        }
        #expect(text == #"{"ok":true,"op":"ping"}"# + "\n" + #"{"ok":true,"op":"stats","events":3,"subscribers":["a","b"]}"# + "\n")
    }

    @Test("strings are escaped so that any text round-trips through a JSON parser", arguments: [
        "plain", "quote \" backslash \\ slash /", "line\nfeed\r\ttab", "\u{0}\u{1}\u{1F}\u{7F}", "é😀\u{2028}\u{2029}",
        String((0..<128).map { Character(Unicode.Scalar(UInt8($0))) }),
    ])
    func escaping(_ value: String) throws {
        let text = Self.text { $0.beginArray(); $0.string(value); $0.endArray() }
        #expect(!text.utf8.contains { $0 < 0x20 }, "control characters are escaped")
        let array = try #require(foundationJSON(Array(text.utf8)) as? [Any])
        #expect(array.first as? String == value)
    }

    @Test("numbers, booleans, null and raw values")
    func scalars() throws {
        let text = Self.text {
            $0.beginObject()
            $0.key("i"); $0.int(-7)
            $0.key("d"); $0.double(0.5)
            $0.key("inf"); $0.double(.infinity)
            $0.key("nan"); $0.double(.nan)
            $0.key("t"); $0.bool(true)
            $0.key("n"); $0.null()
            $0.key("raw"); $0.raw(Array(#"{"a":[1]}"#.utf8))
            $0.key("empty"); $0.beginObject(); $0.endObject()
            $0.endObject()
        }
        #expect(text == #"{"i":-7,"d":0.5,"inf":null,"nan":null,"t":true,"n":null,"raw":{"a":[1]},"empty":{}}"#)
        #expect((try? JSONScanner.scan(Array(text.utf8))) != nil)
    }
}
