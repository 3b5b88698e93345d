/// How one target is spoken to: how an event becomes a request, and how its
/// replies are told apart. The same generator drives every target, so the
/// targets differ only here.
protocol BenchWire {
    /// Appends the request that publishes `event` (the JSON line, no newline).
    func encode(_ event: [UInt8], into out: inout [UInt8])
    /// Parses the complete replies at the front of `bytes`, calling `reply`
    /// with true (stored) or false (refused) for each, in order; returns the
    /// bytes consumed. An incomplete reply stays for the next read.
    mutating func parse(_ bytes: UnsafeRawBufferPointer, reply: (Bool) -> Void) -> Int
    /// The first refusal seen, for the report.
    var firstError: String? { get }
}

/// hookbus: the event line itself; one reply line each, `{"ok":true,...}` when stored.
struct HookbusWire: BenchWire {
    private(set) var firstError: String?
    private static let ok = Array(#"{"ok":true"#.utf8)

    func encode(_ event: [UInt8], into out: inout [UInt8]) {
        out.append(contentsOf: event)
        out.append(0x0A)
    }

    mutating func parse(_ bytes: UnsafeRawBufferPointer, reply: (Bool) -> Void) -> Int {
        var start = 0
        while let newline = memchrIndex(0x0A, in: bytes, from: start) {
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<newline])
            let stored = line.starts(with: Self.ok)
            if !stored && firstError == nil { firstError = String(decoding: line.prefix(300), as: UTF8.self) }
            reply(stored)
            start = newline + 1
        }
        return start
    }
}

/// beanstalkd: `put <pri> <delay> <ttr> <bytes>\r\n<body>\r\n`, answered `INSERTED <id>\r\n`.
/// The job body is the same event JSON.
struct BeanstalkWire: BenchWire {
    private(set) var firstError: String?
    private static let inserted = Array("INSERTED ".utf8)
    /// Every event of a run has the same length, so the command line is built once.
    private let head: [UInt8]
    private let size: Int

    init(eventSize: Int) {
        size = eventSize
        head = Array("put 0 0 60 \(eventSize)\r\n".utf8)
    }

    func encode(_ event: [UInt8], into out: inout [UInt8]) {
        if event.count == size {
            out.append(contentsOf: head)
        } else {
            out.append(contentsOf: Array("put 0 0 60 \(event.count)\r\n".utf8))
        }
        out.append(contentsOf: event)
        out.append(0x0D)
        out.append(0x0A)
    }

    mutating func parse(_ bytes: UnsafeRawBufferPointer, reply: (Bool) -> Void) -> Int {
        var start = 0
        while let newline = memchrIndex(0x0A, in: bytes, from: start) {
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<newline])
            let stored = line.starts(with: Self.inserted)
            if !stored && firstError == nil { firstError = String(decoding: line.prefix(300), as: UTF8.self) }
            reply(stored)
            start = newline + 1
        }
        return start
    }
}

/// redis: `XADD <stream> * e <event>` in RESP; the reply is the entry id (a
/// bulk string) or an error. The stream is not trimmed: every event is kept,
/// as hookbus keeps every event.
struct RedisWire: BenchWire {
    private(set) var firstError: String?
    private let head: [UInt8]

    init(stream: String) {
        head = RESP.commandHead(["XADD", stream, "*", "e"], trailingArguments: 1)
    }

    func encode(_ event: [UInt8], into out: inout [UInt8]) {
        out.append(contentsOf: head)
        RESP.appendBulk(event, to: &out)
    }

    mutating func parse(_ bytes: UnsafeRawBufferPointer, reply: (Bool) -> Void) -> Int {
        var start = 0
        while let (end, isError) = RESP.skip(bytes, at: start) {
            if isError && firstError == nil {
                firstError = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]).prefix(300), as: UTF8.self)
            }
            reply(!isError)
            start = end
        }
        return start
    }
}
