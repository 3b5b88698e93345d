/// The part of RESP (the redis protocol) the load generator needs: commands
/// as arrays of bulk strings, and replies of the five RESP2 kinds.
enum RESP {
    indirect enum Value {
        case simple(String)
        case error(String)
        case integer(Int)
        case bulk([UInt8]?)
        case array([Value]?)

        var bytes: [UInt8]? {
            if case .bulk(let bytes) = self { return bytes }
            return nil
        }

        var elements: [Value]? {
            if case .array(let elements) = self { return elements }
            return nil
        }
    }

    /// A whole command: `*<n>` and each argument as a bulk string.
    static func command(_ arguments: [String]) -> [UInt8] {
        commandHead(arguments, trailingArguments: 0)
    }

    static func command(_ arguments: [[UInt8]]) -> [UInt8] {
        var out = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments { appendBulk(argument, to: &out) }
        return out
    }

    /// The start of a command whose last `trailingArguments` arguments the
    /// caller appends with `appendBulk`.
    static func commandHead(_ arguments: [String], trailingArguments: Int) -> [UInt8] {
        var out = Array("*\(arguments.count + trailingArguments)\r\n".utf8)
        for argument in arguments { appendBulk(Array(argument.utf8), to: &out) }
        return out
    }

    static func appendBulk(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "$"))
        appendDecimal(bytes.count, to: &out)
        out.append(0x0D)
        out.append(0x0A)
        out.append(contentsOf: bytes)
        out.append(0x0D)
        out.append(0x0A)
    }

    private static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value >= 10 { appendDecimal(value / 10, to: &out) }
        out.append(UInt8(ascii: "0") + UInt8(value % 10))
    }

    /// The end of the complete reply starting at `start`, and whether it is an
    /// error; nil if the reply is not complete yet. Allocates nothing.
    static func skip(_ bytes: UnsafeRawBufferPointer, at start: Int) -> (end: Int, isError: Bool)? {
        guard start < bytes.count, let lineEnd = memchrIndex(0x0A, in: bytes, from: start) else { return nil }
        let kind = bytes[start]
        switch kind {
        case UInt8(ascii: "+"), UInt8(ascii: ":"):
            return (lineEnd + 1, false)
        case UInt8(ascii: "-"):
            return (lineEnd + 1, true)
        case UInt8(ascii: "$"):
            let length = integer(bytes, from: start + 1, to: lineEnd)
            if length < 0 { return (lineEnd + 1, false) }
            let end = lineEnd + 1 + length + 2
            return end <= bytes.count ? (end, false) : nil
        case UInt8(ascii: "*"):
            let count = integer(bytes, from: start + 1, to: lineEnd)
            var end = lineEnd + 1
            var isError = false
            for _ in 0..<max(count, 0) {
                guard let (next, error) = skip(bytes, at: end) else { return nil }
                end = next
                isError = isError || error
            }
            return (end, isError)
        default:
            // Not RESP: count it as an error reply so the run reports it.
            return (lineEnd + 1, true)
        }
    }

    /// The complete reply starting at `start` and where it ends; nil if incomplete.
    static func parse(_ bytes: UnsafeRawBufferPointer, at start: Int) -> (value: Value, end: Int)? {
        guard start < bytes.count, let lineEnd = memchrIndex(0x0A, in: bytes, from: start) else { return nil }
        let textEnd = lineEnd > start && bytes[lineEnd - 1] == 0x0D ? lineEnd - 1 : lineEnd
        let line = { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(start + 1)..<textEnd]), as: UTF8.self) }
        switch bytes[start] {
        case UInt8(ascii: "+"): return (.simple(line()), lineEnd + 1)
        case UInt8(ascii: "-"): return (.error(line()), lineEnd + 1)
        case UInt8(ascii: ":"): return (.integer(integer(bytes, from: start + 1, to: lineEnd)), lineEnd + 1)
        case UInt8(ascii: "$"):
            let length = integer(bytes, from: start + 1, to: lineEnd)
            if length < 0 { return (.bulk(nil), lineEnd + 1) }
            let end = lineEnd + 1 + length + 2
            guard end <= bytes.count else { return nil }
            return (.bulk(Array(bytes[(lineEnd + 1)..<(lineEnd + 1 + length)])), end)
        case UInt8(ascii: "*"):
            let count = integer(bytes, from: start + 1, to: lineEnd)
            if count < 0 { return (.array(nil), lineEnd + 1) }
            var elements: [Value] = []
            elements.reserveCapacity(count)
            var end = lineEnd + 1
            for _ in 0..<count {
                guard let (element, next) = parse(bytes, at: end) else { return nil }
                elements.append(element)
                end = next
            }
            return (.array(elements), end)
        default:
            return (.error("not a RESP reply: \(line())"), lineEnd + 1)
        }
    }

    /// The signed decimal in `bytes[from..<to]`, stopping at `\r`.
    private static func integer(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> Int {
        var index = from
        var negative = false
        if index < to && bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var value = 0
        while index < to, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            index += 1
        }
        return negative ? -value : value
    }
}
