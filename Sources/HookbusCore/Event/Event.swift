/// Who sent a line, from the socket's peer credentials (SO_PEERCRED).
public struct Producer: Sendable, Equatable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32

    public init(uid: UInt32, gid: UInt32, pid: Int32) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }

    /// The `source` given to an event that arrives without one.
    public var defaultSource: String { "urn:hookbus:uid:\(uid)" }
}

/// A validated event, ready to store: its indexed attributes, and the event
/// JSON exactly as it will be stored and delivered (the producer's bytes, with
/// any defaulted attributes spliced in at the front).
public struct NewEvent: Sendable, Equatable {
    public var id: String
    public var source: String
    public var type: String
    public var subject: String?
    public var time: String
    public var json: [UInt8]
    public var producer: Producer
    public var receivedAtMicros: Int64

    public init(
        id: String, source: String, type: String, subject: String?, time: String,
        json: [UInt8], producer: Producer, receivedAtMicros: Int64
    ) {
        self.id = id
        self.source = source
        self.type = type
        self.subject = subject
        self.time = time
        self.json = json
        self.producer = producer
        self.receivedAtMicros = receivedAtMicros
    }

    /// The event JSON as text.
    public var jsonText: String { String(decoding: json, as: UTF8.self) }

    /// Calls `body` with the UTF-8 bytes of `source` and `id` (the
    /// idempotency key), without copying them when the strings are native.
    func withKeyBytes<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let direct = try source.utf8.withContiguousStorageIfAvailable { source in
            try id.utf8.withContiguousStorageIfAvailable { id in
                try body(UnsafeRawBufferPointer(source), UnsafeRawBufferPointer(id))
            }
        }
        if let direct, let direct { return direct }
        var (sourceCopy, idCopy) = (source, id)
        return try sourceCopy.withUTF8 { source in
            try idCopy.withUTF8 { id in try body(UnsafeRawBufferPointer(source), UnsafeRawBufferPointer(id)) }
        }
    }
}

/// What the outbox answered for one event.
public enum AppendOutcome: Sendable, Equatable {
    case stored(seq: Int64, id: String)
    /// The `(source, id)` pair was stored before, as `seq`; nothing new was written.
    case duplicate(seq: Int64, id: String)
}
