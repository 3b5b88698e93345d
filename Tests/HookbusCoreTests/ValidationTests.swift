import Foundation
import Testing
@testable import HookbusCore

/// One kind of bad input, and the refusal it must get.
struct BadLine: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var code: ErrorCode
    var reason: String
    var attribute: String?
    /// Text the message must contain (besides the attribute's name).
    var fragment: String?

    init(_ name: String, _ text: String, _ code: ErrorCode, _ reason: String, attribute: String? = nil, fragment: String? = nil) {
        self.init(name, Array(text.utf8), code, reason, attribute: attribute, fragment: fragment)
    }

    init(_ name: String, _ bytes: [UInt8], _ code: ErrorCode, _ reason: String, attribute: String? = nil, fragment: String? = nil) {
        self.name = name
        self.bytes = bytes
        self.code = code
        self.reason = reason
        self.attribute = attribute
        self.fragment = fragment
    }

    var testDescription: String { name }
}

/// `{"type":"` + bytes + `"}`: a string value carrying raw bytes.
private func typeWithRawBytes(_ raw: [UInt8]) -> [UInt8] {
    Array(#"{"type":"a"#.utf8) + raw + Array(#""}"#.utf8)
}

private let deepData = #"{"type":"a","data":"# + String(repeating: "[", count: 10_000)
    + String(repeating: "]", count: 10_000) + "}"

let badLines: [BadLine] = [
    // Not JSON at all.
    BadLine("not JSON: text", "hello", .invalidJSON, "invalid_json"),
    BadLine("not JSON: truncated object", #"{"type":"a""#, .invalidJSON, "invalid_json"),
    BadLine("not JSON: trailing comma", #"{"type":"a",}"#, .invalidJSON, "invalid_json"),
    BadLine("not JSON: single quotes", "{'type':'a'}", .invalidJSON, "invalid_json"),
    BadLine("not JSON: trailing garbage", #"{"type":"a"} x"#, .invalidJSON, "invalid_json"),
    BadLine("not JSON: 10,000-deep nesting in data", deepData, .invalidJSON, "invalid_json", fragment: "nesting"),
    BadLine("not JSON: 10,000-deep nesting at top level", String(repeating: "[", count: 10_000),
            .invalidJSON, "invalid_json", fragment: "nesting"),
    // Invalid UTF-8.
    BadLine("invalid UTF-8: raw 0xff", typeWithRawBytes([0xFF]), .invalidJSON, "invalid_utf8", fragment: "UTF-8"),
    BadLine("invalid UTF-8: truncated multibyte", typeWithRawBytes([0xE2, 0x82]), .invalidJSON, "invalid_utf8"),
    BadLine("invalid UTF-8: overlong NUL", typeWithRawBytes([0xC0, 0x80]), .invalidJSON, "invalid_utf8"),
    BadLine("invalid UTF-8: surrogate", typeWithRawBytes([0xED, 0xA0, 0x80]), .invalidJSON, "invalid_utf8"),
    BadLine("invalid UTF-8: past U+10FFFF", typeWithRawBytes([0xF4, 0x90, 0x80, 0x80]), .invalidJSON, "invalid_utf8"),
    BadLine("invalid UTF-8: lone continuation byte", typeWithRawBytes([0x80]), .invalidJSON, "invalid_utf8"),
    // Valid JSON, but not an object.
    BadLine("not an object: array", #"[{"type":"a"}]"#, .invalidEvent, "not_object", fragment: "array"),
    BadLine("not an object: string", #""client.added""#, .invalidEvent, "not_object", fragment: "string"),
    BadLine("not an object: number", "42", .invalidEvent, "not_object", fragment: "number"),
    BadLine("not an object: null", "null", .invalidEvent, "not_object", fragment: "null"),
    // type.
    BadLine("missing type", #"{"source":"s","id":"1"}"#, .invalidEvent, "missing_type", attribute: "type"),
    BadLine("missing type: empty object", "{}", .invalidEvent, "missing_type", attribute: "type"),
    BadLine("empty type", #"{"type":""}"#, .invalidEvent, "missing_type", attribute: "type", fragment: "empty"),
    BadLine("type of wrong JSON type", #"{"type":7}"#, .invalidEvent, "wrong_type", attribute: "type", fragment: "number"),
    // specversion.
    BadLine("specversion 0.3", #"{"type":"a","specversion":"0.3"}"#, .invalidEvent, "bad_specversion",
            attribute: "specversion", fragment: "0.3"),
    BadLine("specversion as a number", #"{"type":"a","specversion":1.0}"#, .invalidEvent, "wrong_type",
            attribute: "specversion", fragment: "number"),
    // data.
    BadLine("data with data_base64", #"{"type":"a","data":{},"data_base64":"aGk="}"#, .invalidEvent, "data_conflict",
            attribute: "data_base64"),
    BadLine("bad base64: length", #"{"type":"a","data_base64":"abc"}"#, .invalidEvent, "bad_base64", attribute: "data_base64"),
    BadLine("bad base64: alphabet", #"{"type":"a","data_base64":"ab!d"}"#, .invalidEvent, "bad_base64", attribute: "data_base64"),
    BadLine("bad base64: inner padding", #"{"type":"a","data_base64":"a=bc"}"#, .invalidEvent, "bad_base64", attribute: "data_base64"),
    BadLine("data_base64 not a string", #"{"type":"a","data_base64":[1]}"#, .invalidEvent, "wrong_type", attribute: "data_base64"),
    // Extension names.
    BadLine("extension name upper case", #"{"type":"a","Region":"eu"}"#, .invalidEvent, "bad_extension_name", attribute: "Region"),
    BadLine("extension name of 21 characters", #"{"type":"a","abcdefghijklmnopqrstu":1}"#, .invalidEvent,
            "bad_extension_name", attribute: "abcdefghijklmnopqrstu"),
    BadLine("extension name with underscore", #"{"type":"a","my_ext":1}"#, .invalidEvent, "bad_extension_name", attribute: "my_ext"),
    BadLine("extension name empty", #"{"type":"a","":1}"#, .invalidEvent, "bad_extension_name", attribute: ""),
    // Extension values.
    BadLine("extension with object value", #"{"type":"a","ext":{"k":1}}"#, .invalidEvent, "wrong_type", attribute: "ext",
            fragment: "object"),
    BadLine("extension with array value", #"{"type":"a","ext":[1]}"#, .invalidEvent, "wrong_type", attribute: "ext",
            fragment: "array"),
    BadLine("extension with null value", #"{"type":"a","ext":null}"#, .invalidEvent, "wrong_type", attribute: "ext",
            fragment: "null"),
    // Context attributes of the wrong JSON type.
    BadLine("id is a number", #"{"type":"a","id":5}"#, .invalidEvent, "wrong_type", attribute: "id", fragment: "number"),
    BadLine("subject is a boolean", #"{"type":"a","subject":true}"#, .invalidEvent, "wrong_type", attribute: "subject",
            fragment: "boolean"),
    BadLine("time is null", #"{"type":"a","time":null}"#, .invalidEvent, "wrong_type", attribute: "time", fragment: "null"),
    BadLine("source is an object", #"{"type":"a","source":{}}"#, .invalidEvent, "wrong_type", attribute: "source"),
    // time.
    BadLine("bad time: a word", #"{"type":"a","time":"yesterday"}"#, .invalidEvent, "bad_time", attribute: "time",
            fragment: "yesterday"),
    BadLine("bad time: month 13", #"{"type":"a","time":"2026-13-01T00:00:00Z"}"#, .invalidEvent, "bad_time", attribute: "time"),
    BadLine("bad time: February 30", #"{"type":"a","time":"2026-02-30T00:00:00Z"}"#, .invalidEvent, "bad_time", attribute: "time"),
    BadLine("bad time: February 29 of a common year", #"{"type":"a","time":"2025-02-29T00:00:00Z"}"#, .invalidEvent,
            "bad_time", attribute: "time"),
    BadLine("bad time: no zone", #"{"type":"a","time":"2026-01-01T00:00:00"}"#, .invalidEvent, "bad_time", attribute: "time"),
    BadLine("bad time: date only", #"{"type":"a","time":"2026-01-01"}"#, .invalidEvent, "bad_time", attribute: "time"),
    BadLine("bad time: hour 24", #"{"type":"a","time":"2026-01-01T24:00:00Z"}"#, .invalidEvent, "bad_time", attribute: "time"),
    BadLine("bad time: empty fraction", #"{"type":"a","time":"2026-01-01T00:00:00.Z"}"#, .invalidEvent, "bad_time",
            attribute: "time"),
    BadLine("bad time: offset without colon", #"{"type":"a","time":"2026-01-01T00:00:00+0100"}"#, .invalidEvent, "bad_time",
            attribute: "time"),
    BadLine("bad time: trailing text", #"{"type":"a","time":"2026-01-01T00:00:00Zjunk"}"#, .invalidEvent, "bad_time",
            attribute: "time"),
    // Empty id and source.
    BadLine("empty id", #"{"type":"a","id":""}"#, .invalidEvent, "empty_attribute", attribute: "id"),
    BadLine("empty source", #"{"type":"a","source":""}"#, .invalidEvent, "empty_attribute", attribute: "source"),
    // The broker's own sources: each producer's, for the producer whose uid it names (the test producer's is 1000).
    BadLine("another uid's source", #"{"type":"a","source":"urn:hookbus:uid:0"}"#, .unauthorized, "source_reserved",
            attribute: "source", fragment: "yours is urn:hookbus:uid:1000"),
    BadLine("a malformed uid source", #"{"type":"a","source":"urn:hookbus:uid:1000x"}"#, .unauthorized, "source_reserved",
            attribute: "source"),
    BadLine("another uid's source in other case", #"{"type":"a","source":"URN:Hookbus:UID:0"}"#, .unauthorized, "source_reserved",
            attribute: "source"),
    // Duplicates, also when spelled differently.
    BadLine("duplicate attribute", #"{"type":"a","id":"1","id":"2"}"#, .invalidEvent, "duplicate_attribute", attribute: "id"),
    BadLine("duplicate attribute through an escape", #"{"type":"a","t\u0079pe":"b"}"#, .invalidEvent,
            "duplicate_attribute", attribute: "type"),
    // Commands.
    BadLine("op is not a string", #"{"op":5}"#, .badRequest, "wrong_type", attribute: "op", fragment: "number"),
    BadLine("op is null", #"{"op":null,"type":"a"}"#, .badRequest, "wrong_type", attribute: "op"),
]

@Suite("Event validation through RequestDecoder")
struct ValidationTests {
    @Test("a bad line is refused with its code, reason and attribute", arguments: badLines)
    func refused(_ row: BadLine) throws {
        let error = try #require(decode(row.bytes).refusal, "\(row.name) was not refused")
        #expect(error.code == row.code)
        #expect(error.reason == row.reason)
        #expect(error.attribute == row.attribute)
        #expect(!error.message.isEmpty)
        if let attribute = row.attribute, !attribute.isEmpty {
            #expect(error.message.contains("'\(attribute)'"), "message does not name the attribute: \(error.message)")
        }
        if let fragment = row.fragment {
            #expect(error.message.contains(fragment), "message lacks \"\(fragment)\": \(error.message)")
        }
    }

    @Test("every error reason the table expects belongs to an error code the protocol defines")
    func tableUsesKnownCodes() {
        let codes = Set(badLines.map(\.code.rawValue))
        #expect(codes.isSubset(of: Set(ErrorCode.allCases.map(\.rawValue))))
        // One row at least for every kind of bad input the issue lists.
        let reasons = Set(badLines.map(\.reason))
        #expect(reasons == [
            "invalid_json", "invalid_utf8", "not_object", "missing_type", "bad_specversion", "wrong_type",
            "data_conflict", "bad_base64", "bad_extension_name", "bad_time", "empty_attribute", "duplicate_attribute", "source_reserved",
        ])
    }

    @Test("a refusal message never carries the payload of data", arguments: [
        #"{"type":"","data":{"secret":"SECRET-PAYLOAD"}}"#,
        #"{"data":"SECRET-PAYLOAD","type":"a","time":"yesterday"}"#,
        #"{"data":"SECRET-PAYLOAD","type":"a","Bad":1}"#,
        #"{"data":"SECRET-PAYLOAD","type":"a","data_base64":"aGk="}"#,
        #"{"data":"SECRET-PAYLOAD","type":"a","specversion":"2.0"}"#,
        #"{"data":"SECRET-PAYLOAD","type":"a","data":"SECRET-PAYLOAD"}"#,
        #"{"data":"SECRET-PAYLOAD","type":"a","#,
        #"{"data":"SECRET-PAYLOAD\x","type":"a"}"#,
        #"["SECRET-PAYLOAD"]"#,
    ])
    func messagesHideData(_ line: String) throws {
        let error = try #require(decode(line).refusal)
        #expect(!error.message.contains("SECRET"), "\(error.message)")
    }

    @Test("a too-large frame is refused with too_large and the limit")
    func tooLargeFrame() throws {
        let request = RequestDecoder().decode(.tooLarge(limit: 1024), producer: testProducer, nowMicros: testNow)
        let error = try #require(request.refusal)
        #expect(error.code == .tooLarge)
        #expect(error.message.contains("1024"))
    }

    // MARK: - Commands

    @Test("a line with op is a command, whatever else it holds", arguments: [
        (#"{"op":"ping"}"#, "ping"),
        (#"{"op":"stats","type":""}"#, "stats"),
        (#" {"type":"client.added","op":"subscribe","types":["client.*"]} "#, "subscribe"),
        (#"{"op":"caf\u00e9"}"#, "café"),
    ])
    func command(_ line: String, op: String) throws {
        let command = try #require(decode(line).command)
        #expect(command.op == op)
        #expect(command.line == Array(line.utf8))
    }

    @Test("a command's members can be read back as raw text")
    func commandMembers() throws {
        let command = try #require(decode(#"{"op":"subscribe","types":["a.*", "b"],"window":16}"#).command)
        let types = try #require(command.member("types"))
        #expect(types.kind == .array)
        #expect(command.text(of: types) == #"["a.*", "b"]"#)
        #expect(command.text(of: try #require(command.member("window"))) == "16")
        #expect(command.member("name") == nil)
    }

    // MARK: - Happy paths

    @Test("missing id, source, time and specversion get defaults spliced in at the front")
    func defaults() throws {
        let line = #"{"type":"client.added","data":{"ip":"10.0.0.2"}}"#
        let event = try #require(decode(line).event)
        #expect(event.type == "client.added")
        #expect(event.source == "urn:hookbus:uid:1000")
        #expect(event.producer == testProducer)
        #expect(event.receivedAtMicros == testNow)
        #expect(event.subject == nil)
        // A ULID: 26 characters of Crockford base32.
        #expect(event.id.utf8.count == 26)
        #expect(event.id.allSatisfy { "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains($0) })
        // The receipt time, in RFC 3339.
        #expect(event.time == "2026-11-23T04:30:00.123456Z")
        #expect(Timestamp.parse(event.time) == testNow)

        // The producer's bytes, after the injected members.
        let prefix = #"{"specversion":"1.0","id":"\#(event.id)","source":"urn:hookbus:uid:1000","time":"\#(event.time)","#
        #expect(event.jsonText == prefix + line.dropFirst())
        let object = try #require(foundationJSON(event.json) as? [String: Any])
        #expect(Set(object.keys) == ["specversion", "id", "source", "time", "type", "data"])
        #expect(object["specversion"] as? String == "1.0")
        #expect(object["id"] as? String == event.id)
        #expect(object["source"] as? String == "urn:hookbus:uid:1000")
        #expect(object["time"] as? String == event.time)
        #expect(object["type"] as? String == "client.added")
        #expect((object["data"] as? [String: Any])?["ip"] as? String == "10.0.0.2")
    }

    @Test("a producer may name its own urn:hookbus:uid source, the one it gets when it sends none")
    func ownReservedSource() throws {
        let event = try #require(decode(#"{"type":"a","source":"urn:hookbus:uid:1000","id":"x"}"#).event)
        #expect(event.source == "urn:hookbus:uid:1000")
        #expect(try #require(decode(#"{"type":"a","id":"y"}"#).event).source == "urn:hookbus:uid:1000")
    }

    @Test("only the missing attributes are injected")
    func partialInjection() throws {
        let line = #"{ "id" : "e1", "type":"a", "specversion":"1.0" }"#
        let event = try #require(decode(line).event)
        #expect(event.id == "e1")
        #expect(event.jsonText.hasPrefix(#"{"source":"urn:hookbus:uid:1000","time":""#))
        let object = try #require(foundationJSON(event.json) as? [String: Any])
        #expect(Set(object.keys) == ["source", "time", "id", "type", "specversion"])
        #expect(event.jsonText.components(separatedBy: "\"id\"").count == 2, "id appears once")
    }

    @Test("with every attribute given, the stored JSON is the producer's bytes, trimmed", arguments: ["", "  ", "\t \r"])
    func noInjection(_ padding: String) throws {
        let object = #"{"specversion":"1.0","id":"e-1","source":"fleet","time":"2026-11-23T04:30:00Z","type":"client.added","subject":"host1","data":[1, 2]}"#
        let event = try #require(decode(padding + object + padding).event)
        #expect(event.json == Array(object.utf8))
        #expect(event.id == "e-1")
        #expect(event.source == "fleet")
        #expect(event.time == "2026-11-23T04:30:00Z")
        #expect(event.subject == "host1")
    }

    @Test("generated ids differ and, from one decoder, increase even within one millisecond")
    func generatedIDs() throws {
        let decoder = RequestDecoder()
        let line = Array(#"{"type":"a"}"#.utf8)
        let first = try #require(decoder.decode(line: line, producer: testProducer, nowMicros: testNow).event)
        let second = try #require(decoder.decode(line: line, producer: testProducer, nowMicros: testNow).event)
        #expect(first.id < second.id)
        let other = try #require(decode(line).event)
        #expect(other.id != first.id && other.id != second.id)
    }

    @Test("valid RFC 3339 times are accepted as given", arguments: [
        "2026-11-23T04:30:00Z",
        "2026-11-23T04:30:00.5Z",
        "2026-11-23T04:30:00.123456789Z",
        "2026-11-23T05:30:00+01:00",
        "2026-11-22T23:00:00.25-05:30",
        "2026-11-23t04:30:00z",
        "2024-02-29T00:00:00Z",
        "2016-12-31T23:59:60Z",
    ])
    func validTime(_ time: String) throws {
        let event = try #require(decode(#"{"type":"a","time":"\#(time)"}"#).event, "\(time) refused")
        #expect(event.time == time)
        #expect(event.jsonText.components(separatedBy: #""time""#).count == 2, "time was injected a second time")
    }

    @Test("extension attributes may hold strings, numbers and booleans", arguments: [
        #""ext":"eu""#, #""ext":5"#, #""ext":-1.5e3"#, #""ext":true"#, #""ext":false"#,
        #""abcdefghijklmnopqrst":1"#, #""a1":"x""#, #""0":0"#,
    ])
    func extensionAccepted(_ member: String) throws {
        let event = try #require(decode(#"{"type":"a",\#(member)}"#).event, "\(member) refused")
        #expect(foundationJSON(event.json) is [String: Any])
    }

    @Test("data may be any JSON value", arguments: [#"null"#, #"1"#, #""text""#, #"[]"#, #"{"a":{"b":[null]}}"#, #"true"#])
    func anyData(_ data: String) throws {
        let event = try #require(decode(#"{"type":"a","data":\#(data)}"#).event, "\(data) refused")
        let object = try #require(foundationJSON(event.json) as? [String: Any])
        #expect(object.keys.contains("data"))
    }

    @Test("data_base64 alone is accepted", arguments: ["aGVsbG8=", "aGk=", "AAAA", "", "+/+/"])
    func base64Accepted(_ text: String) throws {
        let event = try #require(decode(#"{"type":"a","data_base64":"\#(text)"}"#).event, "\(text) refused")
        let object = try #require(foundationJSON(event.json) as? [String: Any])
        #expect(object["data_base64"] as? String == text)
    }

    @Test("escapes and surrogate pairs in type decode to the right text", arguments: [
        (#"caf\u00e9.added"#, "café.added"),
        (#"smile.\ud83d\ude00"#, "smile.😀"),
        (#"a\/b\\c\"d"#, #"a/b\c"d"#),
        ("café.raw", "café.raw"),
        (#"nbsp\u00a0here"#, "nbsp\u{a0}here"),
    ])
    func escapedType(_ raw: String, decoded: String) throws {
        let event = try #require(decode(#"{"type":"\#(raw)"}"#).event)
        #expect(event.type == decoded)
        let object = try #require(foundationJSON(event.json) as? [String: Any])
        #expect(object["type"] as? String == decoded)
    }

    @Test("subject and the other context attributes are taken as strings")
    func contextAttributes() throws {
        let line = #"{"type":"a","subject":"h1","datacontenttype":"application/json","dataschema":"urn:x"}"#
        let event = try #require(decode(line).event)
        #expect(event.subject == "h1")
    }
}
