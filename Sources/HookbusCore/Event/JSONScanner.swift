/// The JSON type of a value, named as messages name it.
public enum JSONKind: String, Sendable {
    case object, array, string, number, boolean, null
}

/// One member of a line's top-level object: its key, the kind of its value,
/// where the value's text lies in the line, and the decoded text of a string value.
public struct JSONMember: Sendable {
    public var key: String
    public var kind: JSONKind
    public var valueRange: Range<Int>
    public var string: String?
}

/// What a line turned out to be.
public enum ScannedLine: Sendable {
    /// A JSON object, with its top-level members in order (duplicates kept).
    case object([JSONMember])
    /// Valid JSON whose top level is not an object.
    case notObject(JSONKind)
}

/// Why a line is not JSON, with the byte offset where that became clear.
public struct JSONSyntaxError: Error, Sendable, Equatable {
    public var offset: Int
    public var reason: String
    /// True when the bytes are not UTF-8 at all, rather than bad JSON syntax.
    public var invalidUTF8: Bool
}

/// A strict RFC 8259 validator that decodes only what the broker needs.
///
/// It checks the whole line (syntax, UTF-8, string escapes, nesting depth) but
/// builds no tree: the members of the top-level object come back as ranges into
/// the producer's bytes, with string values decoded. Nested values are walked
/// iteratively, so hostile nesting costs neither stack nor memory beyond the
/// depth limit.
public enum JSONScanner {
    /// Containers nested deeper than this are refused. Events are flat by
    /// nature; the limit keeps hostile input (10,000 `[`) cheap to refuse.
    public static let maxDepth = 256

    public static func scan(_ bytes: [UInt8]) throws(JSONSyntaxError) -> ScannedLine {
        let result = bytes.withUnsafeBytes { raw -> Result<ScannedLine, JSONSyntaxError> in
            if let bad = firstInvalidUTF8(raw) {
                return .failure(JSONSyntaxError(offset: bad, reason: "invalid UTF-8 at byte \(bad)", invalidUTF8: true))
            }
            var cursor = Cursor(bytes: raw)
            do throws(JSONSyntaxError) {
                let scanned = try cursor.scanRoot()
                cursor.skipWhitespace()
                if cursor.index < raw.count {
                    throw cursor.error("unexpected data after the JSON value")
                }
                return .success(scanned)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The offset of the first byte that breaks UTF-8 (overlong forms, surrogates
    /// and code points past U+10FFFF included), or nil if the bytes are valid.
    public static func firstInvalidUTF8(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var index = 0
        let count = bytes.count
        while index < count {
            // ASCII eight bytes at a time: most lines are nothing else.
            while index + 8 <= count && bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                index += 8
            }
            guard index < count else { break }
            let lead = bytes[index]
            if lead < 0x80 { index += 1; continue }
            let length: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: return index
            }
            guard index + length <= count else { return index }
            let second = bytes[index + 1]
            guard second >= low && second <= high else { return index }
            for offset in 2..<max(length, 2) where bytes[index + offset] & 0xC0 != 0x80 {
                return index
            }
            index += length
        }
        return nil
    }
}

private struct Cursor {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func error(_ reason: String) -> JSONSyntaxError {
        JSONSyntaxError(offset: index, reason: "\(reason) at byte \(index)", invalidUTF8: false)
    }

    var atEnd: Bool { index >= bytes.count }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    func peek() throws(JSONSyntaxError) -> UInt8 {
        guard index < bytes.count else { throw error("unexpected end of line") }
        return bytes[index]
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws(JSONSyntaxError) {
        guard try peek() == byte else { throw error("expected \(what)") }
        index += 1
    }

    func kind(of byte: UInt8) -> JSONKind? {
        switch byte {
        case UInt8(ascii: "{"): .object
        case UInt8(ascii: "["): .array
        case UInt8(ascii: "\""): .string
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): .number
        case UInt8(ascii: "t"), UInt8(ascii: "f"): .boolean
        case UInt8(ascii: "n"): .null
        default: nil
        }
    }

    mutating func scanRoot() throws(JSONSyntaxError) -> ScannedLine {
        skipWhitespace()
        let first = try peek()
        guard let rootKind = kind(of: first) else { throw error("expected a JSON value") }
        guard rootKind == .object else {
            try skipValue()
            return .notObject(rootKind)
        }
        index += 1
        var members: [JSONMember] = []
        skipWhitespace()
        if try peek() == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard try peek() == UInt8(ascii: "\"") else { throw error("expected a member name") }
            let key = try string(decode: true) ?? ""
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            let start = index
            guard let valueKind = kind(of: try peek()) else { throw error("expected a JSON value") }
            var text: String?
            if valueKind == .string {
                text = try string(decode: true)
            } else {
                try skipValue(depth: 1)
            }
            members.append(JSONMember(key: key, kind: valueKind, valueRange: start..<index, string: text))
            skipWhitespace()
            switch try peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return .object(members)
            default: throw error("expected ',' or '}'")
            }
        }
    }

    /// Walks one value of any kind without recursion, checking its syntax.
    mutating func skipValue(depth baseDepth: Int = 0) throws(JSONSyntaxError) {
        var stack: [UInt8] = []
        while true {
            // A value is expected here.
            skipWhitespace()
            let byte = try peek()
            var opened = false
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                // The root object is level 1; a container opened here is one deeper
                // than the ones around it, empty or not.
                if stack.count + baseDepth + 1 > JSONScanner.maxDepth {
                    throw error("nesting deeper than \(JSONScanner.maxDepth) levels")
                }
                index += 1
                skipWhitespace()
                let close = byte == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                if try peek() == close {
                    index += 1
                } else {
                    stack.append(byte)
                    if byte == UInt8(ascii: "{") { try memberName() }
                    opened = true
                }
            case UInt8(ascii: "\""):
                _ = try string(decode: false)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try number()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default:
                throw error("expected a JSON value")
            }
            if opened { continue }
            // A value is complete: close containers until one wants another value.
            while let top = stack.last {
                skipWhitespace()
                let next = try peek()
                if next == UInt8(ascii: ",") {
                    index += 1
                    if top == UInt8(ascii: "{") { try memberName() }
                    break
                }
                let close = top == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                guard next == close else {
                    throw error(top == UInt8(ascii: "{") ? "expected ',' or '}'" : "expected ',' or ']'")
                }
                index += 1
                stack.removeLast()
            }
            if stack.isEmpty { return }
        }
    }

    mutating func memberName() throws(JSONSyntaxError) {
        skipWhitespace()
        guard try peek() == UInt8(ascii: "\"") else { throw error("expected a member name") }
        _ = try string(decode: false)
        skipWhitespace()
        try expect(UInt8(ascii: ":"), "':'")
    }

    mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("invalid literal") }
        let expected = UnsafeRawBufferPointer(start: word.utf8Start, count: count)
        for offset in 0..<count where bytes[index + offset] != expected[offset] {
            throw error("invalid literal")
        }
        index += count
    }

    mutating func number() throws(JSONSyntaxError) {
        func digit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard !atEnd, digit(bytes[index]) else { throw error("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while !atEnd && digit(bytes[index]) { index += 1 }
        }
        if !atEnd && bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard !atEnd, digit(bytes[index]) else { throw error("invalid number") }
            while !atEnd && digit(bytes[index]) { index += 1 }
        }
        if !atEnd && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if !atEnd && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) { index += 1 }
            guard !atEnd, digit(bytes[index]) else { throw error("invalid number") }
            while !atEnd && digit(bytes[index]) { index += 1 }
        }
    }

    /// Reads a string literal starting at its opening quote; returns its decoded
    /// text when `decode` is true. UTF-8 was validated beforehand.
    mutating func string(decode: Bool) throws(JSONSyntaxError) -> String? {
        index += 1
        let start = index
        var decoded: [UInt8]? = nil
        var runStart = start
        while true {
            guard index < bytes.count else { throw error("unterminated string") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                guard decode else { return nil }
                let run = UnsafeRawBufferPointer(rebasing: bytes[runStart..<(index - 1)])
                if var text = decoded {
                    text.append(contentsOf: run)
                    return String(decoding: text, as: UTF8.self)
                }
                return String(decoding: run, as: UTF8.self)
            }
            if byte < 0x20 { throw error("control character in string") }
            if byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            if decode {
                if decoded == nil { decoded = [] }
                decoded!.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
            }
            index += 1
            guard index < bytes.count else { throw error("unterminated string") }
            let escape = bytes[index]
            index += 1
            var scalar: UInt32
            switch escape {
            case UInt8(ascii: "\""): scalar = 0x22
            case UInt8(ascii: "\\"): scalar = 0x5C
            case UInt8(ascii: "/"): scalar = 0x2F
            case UInt8(ascii: "b"): scalar = 0x08
            case UInt8(ascii: "f"): scalar = 0x0C
            case UInt8(ascii: "n"): scalar = 0x0A
            case UInt8(ascii: "r"): scalar = 0x0D
            case UInt8(ascii: "t"): scalar = 0x09
            case UInt8(ascii: "u"):
                scalar = try hex4()
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    index += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low <= 0xDFFF else { throw error("unpaired surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                    throw error("unpaired surrogate in \\u escape")
                }
            default:
                index -= 1
                throw error("invalid escape in string")
            }
            if decode, let unicode = Unicode.Scalar(scalar) {
                decoded!.append(contentsOf: Array(String(Character(unicode)).utf8))
            }
            runStart = index
        }
    }

    mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let nibble: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = UInt32(byte - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = UInt32(byte - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = UInt32(byte - 0x41 + 10)
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | nibble
            index += 1
        }
        return value
    }
}
