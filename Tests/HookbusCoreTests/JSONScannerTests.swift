import Foundation
import Testing
@testable import HookbusCore

/// A JSON text and whether RFC 8259 accepts it.
struct JSONCase: Sendable, CustomTestStringConvertible {
    var bytes: [UInt8]
    var valid: Bool
    var note: String
    /// Foundation's JSONSerialization on Linux is known to accept this
    /// although RFC 8259 does not; only the scanner is held to the RFC here.
    var foundationLenient = false

    init(_ text: String, _ valid: Bool, _ note: String = "", foundationLenient: Bool = false) {
        self.init(Array(text.utf8), valid, note.isEmpty ? text : note)
        self.foundationLenient = foundationLenient
    }

    init(_ bytes: [UInt8], _ valid: Bool, _ note: String) {
        self.bytes = bytes
        self.valid = valid
        self.note = note
    }

    var testDescription: String { "\(valid ? "valid" : "invalid"): \(note)" }
}

private let corpus: [JSONCase] = [
    // Valid: numbers.
    JSONCase("0", true), JSONCase("-0", true), JSONCase("1e5", true), JSONCase("1E+5", true), JSONCase("1e-5", true),
    JSONCase("0.5", true), JSONCase("-0.5e-3", true), JSONCase("123456789", true), JSONCase("[0,-1,2.25,1E2]", true),
    // Valid: literals, strings, containers, whitespace.
    JSONCase("true", true), JSONCase("false", true), JSONCase("null", true),
    JSONCase("{}", true), JSONCase("[]", true), JSONCase(#""""#, true), JSONCase(#"{"":""}"#, true),
    JSONCase(" \t\r\n{ \"a\" : [ 1 , 2 ] } \n", true, "whitespace everywhere"),
    JSONCase(#"{"a":{"b":{"c":[[],{}]}}}"#, true),
    JSONCase(#"{"a":1,"a":2}"#, true, "duplicate names (RFC: SHOULD be unique, still JSON)"),
    JSONCase(#""\"\\\/\b\f\n\r\t""#, true, "every short escape"),
    JSONCase(#""\u0000""#, true, "escaped NUL"),
    JSONCase(#""\u00e9\u00E9""#, true, "hex digits of both cases"),
    JSONCase(#""\ud83d\ude00""#, true, "surrogate pair"),
    JSONCase("\"é😀\u{2028}\"", true, "raw multibyte UTF-8"),
    JSONCase("\"\u{7F}\"", true, "DEL is not a control character for JSON"),
    // Invalid: numbers.
    JSONCase("01", false), JSONCase("-01", false), JSONCase("1.", false), JSONCase(".5", false), JSONCase("+1", false),
    JSONCase("-", false), JSONCase("1e", false), JSONCase("1e+", false), JSONCase("0x10", false), JSONCase("1.e5", false),
    JSONCase("NaN", false), JSONCase("Infinity", false), JSONCase("-Infinity", false),
    // Invalid: structure.
    JSONCase("", false, "empty"), JSONCase("   ", false, "only whitespace"),
    JSONCase("[1,]", false, foundationLenient: true), JSONCase(#"{"a":1,}"#, false, foundationLenient: true), JSONCase("[,1]", false), JSONCase("[1 2]", false),
    JSONCase("{,}", false), JSONCase(#"{"a" 1}"#, false), JSONCase(#"{"a":}"#, false), JSONCase("{a:1}", false),
    JSONCase("{'a':1}", false), JSONCase("['a']", false), JSONCase("[1", false), JSONCase("{", false),
    JSONCase("]", false), JSONCase("{}}", false), JSONCase("{} {}", false), JSONCase("[1] x", false),
    JSONCase("tru", false), JSONCase("True", false), JSONCase("nul", false), JSONCase("nulls", false),
    JSONCase("/* c */ {}", false, "comment"), JSONCase("\u{0C}{}", false, "form feed is not JSON whitespace"),
    // Invalid: strings.
    JSONCase(#""unterminated"#, false), JSONCase(#""a\"#, false, "escape at the end"),
    JSONCase([0x22, 0x61, 0x01, 0x62, 0x22], false, "raw control character U+0001 in a string"),
    JSONCase("\"a\tb\"", false, "raw tab in a string"), JSONCase("\"a\nb\"", false, "raw newline in a string"),
    JSONCase(#""\x41""#, false), JSONCase(#""\a""#, false), JSONCase(#""\U0041""#, false),
    JSONCase(#""\u12""#, false), JSONCase(#""\u12G4""#, false),
    JSONCase(#""\ud800""#, false, "lone high surrogate"), JSONCase(#""\udc00""#, false, "lone low surrogate"),
    JSONCase(#""\ud800\u0041""#, false, "high surrogate then no low one"),
    JSONCase(#""\ud800x""#, false, "high surrogate then text"),
    // Invalid: NUL bytes and bad UTF-8.
    JSONCase([0x7B, 0x7D, 0x00], false, "NUL after the value"),
    JSONCase([0x22, 0x00, 0x22], false, "raw NUL in a string"),
    JSONCase([0x00], false, "lone NUL"),
    JSONCase([0x22, 0xFF, 0x22], false, "0xff in a string"),
    JSONCase([0x22, 0xC0, 0x80, 0x22], false, "overlong NUL"),
    JSONCase([0x22, 0xED, 0xA0, 0x80, 0x22], false, "UTF-8-encoded surrogate"),
    JSONCase([0x22, 0xE2, 0x82, 0x22], false, "truncated multibyte"),
]

@Suite("JSONScanner")
struct JSONScannerTests {
    @Test("accepts exactly what RFC 8259 accepts, as Foundation does", arguments: corpus)
    func agreesWithRFCAndFoundation(_ row: JSONCase) {
        let scannerAccepts = (try? JSONScanner.scan(row.bytes)) != nil
        #expect(scannerAccepts == row.valid, "JSONScanner")
        let foundationAccepts = foundationJSON(row.bytes) != nil
        if row.foundationLenient {
            // Recorded so the table notices if Foundation becomes strict.
            #expect(foundationAccepts, "JSONSerialization no longer accepts this; drop foundationLenient")
        } else {
            #expect(foundationAccepts == row.valid, "JSONSerialization")
        }
    }

    @Test("member ranges point at each value's bytes, and strings are decoded")
    func memberRanges() throws {
        let text = #"{ "a" : 1 , "b":[1, {"x":2}] ,"c" : "x\"y\u00e9" , "d":null,"e":true, "f":-0.5e+2,"a":{} }"#
        let line = Array(text.utf8)
        guard case .object(let members) = try JSONScanner.scan(line) else {
            Issue.record("not scanned as an object")
            return
        }
        let expected: [(String, JSONKind, String, String?)] = [
            ("a", .number, "1", nil),
            ("b", .array, #"[1, {"x":2}]"#, nil),
            ("c", .string, #""x\"y\u00e9""#, "x\"yé"),
            ("d", .null, "null", nil),
            ("e", .boolean, "true", nil),
            ("f", .number, "-0.5e+2", nil),
            ("a", .object, "{}", nil),
        ]
        #expect(members.count == expected.count)
        for (member, (key, kind, raw, string)) in zip(members, expected) {
            #expect(member.key == key)
            #expect(member.kind == kind, "\(key)")
            #expect(String(decoding: line[member.valueRange], as: UTF8.self) == raw, "\(key)")
            #expect(member.string == string, "\(key)")
        }
    }

    @Test("keys are decoded, escapes included")
    func escapedKeys() throws {
        guard case .object(let members) = try JSONScanner.scan(Array(#"{"t\u0079pe":"a","\ud83d\ude00":1}"#.utf8)) else {
            Issue.record("not scanned as an object")
            return
        }
        #expect(members.map(\.key) == ["type", "😀"])
    }

    @Test("a top-level value that is not an object is named by its kind", arguments: [
        ("[1]", JSONKind.array), (#""s""#, .string), ("-1.5", .number), ("false", .boolean), ("null", .null),
    ])
    func notObject(_ text: String, kind: JSONKind) throws {
        guard case .notObject(let found) = try JSONScanner.scan(Array(text.utf8)) else {
            Issue.record("\(text) scanned as an object")
            return
        }
        #expect(found == kind)
    }

    @Test("syntax errors carry the offset where the text went wrong", arguments: [
        (#"{"a":01}"#, 6),
        (#"{"a":1,}"#, 7),
        (#"{"a":"\x"}"#, 7),
        (#"{"a":1} x"#, 8),
        (#"{"a":tru}"#, 5),
    ])
    func errorOffset(_ text: String, offset: Int) throws {
        let error = #expect(throws: JSONSyntaxError.self) { try JSONScanner.scan(Array(text.utf8)) }
        #expect(error?.offset == offset)
        #expect(error?.invalidUTF8 == false)
        #expect(error?.reason.contains("byte \(offset)") == true)
    }

    @Test("invalid UTF-8 is reported as such, at the first bad byte")
    func invalidUTF8Offset() {
        let bytes: [UInt8] = Array(#"{"a":"é"#.utf8) + [0xFF] + Array(#""}"#.utf8)
        let error = #expect(throws: JSONSyntaxError.self) { try JSONScanner.scan(bytes) }
        #expect(error?.invalidUTF8 == true)
        #expect(error?.offset == 8)
    }

    @Test("nesting up to maxDepth is accepted, one level deeper is refused", arguments: [false, true])
    func depthLimit(insideObject: Bool) {
        func nested(_ depth: Int) -> [UInt8] {
            if insideObject {
                // The top-level object is one level itself.
                return Array((#"{"data":"# + String(repeating: "[", count: depth - 1)
                    + String(repeating: "]", count: depth - 1) + "}").utf8)
            }
            return Array((String(repeating: "[", count: depth) + String(repeating: "]", count: depth)).utf8)
        }
        #expect((try? JSONScanner.scan(nested(JSONScanner.maxDepth))) != nil)
        let error = #expect(throws: JSONSyntaxError.self) { try JSONScanner.scan(nested(JSONScanner.maxDepth + 1)) }
        #expect(error?.reason.contains("nesting") == true)
    }

    @Test("firstInvalidUTF8 agrees with Swift's own UTF-8 validation", arguments: [
        [UInt8](), Array("plain".utf8), Array("é😀€".utf8), [0xFF], [0xC0, 0x80], [0xC1, 0xBF], [0xC2, 0x80],
        [0xE0, 0x80, 0x80], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80], [0xEF, 0xBF, 0xBF],
        [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
        [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0xE2, 0x82, 0x41], [0x41, 0x80], [0xF0, 0x9F, 0x98],
    ])
    func utf8Validation(_ bytes: [UInt8]) {
        let ours = bytes.withUnsafeBytes { JSONScanner.firstInvalidUTF8($0) } == nil
        let swift = String(validating: bytes, as: UTF8.self) != nil
        #expect(ours == swift)
    }
}
