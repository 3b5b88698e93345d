import HookbusCore
#if canImport(Glibc)
import Glibc
#endif

/// The event the load generator sends, rebuilt in place for each send.
///
///     {"specversion":"1.0","type":"bench.event","source":"/bench/<run>","id":"<conn>-<n>",
///      "data":{"t":<send time>,"w":<0 or 1>,"pad":"xxxx..."}}
///
/// Every number has a fixed width, so the line is built once and only its
/// digits change: building an event costs a few dozen byte stores, and the
/// generator stays cheaper than what it measures. `t` is the intended send
/// time in nanoseconds on the realtime clock; subscribers subtract it from
/// their own clock to get publish-to-delivery latency. `w` is 1 for an event
/// sent during the warm-up (`--warmup`): subscribers that keep their own
/// report (`hookbus bench sink`, the latency-probe hook) count it but leave
/// it out of their latencies, as the generator does with its own. `source`
/// carries a run id, so `(source, id)` never repeats across runs against one
/// database.
struct BenchEvent {
    static let type = "bench.event"
    /// Digits of `t`: realtime nanoseconds have 19 digits from 2001 to 2286.
    static let timeDigits = 19
    static let counterDigits = 10

    private(set) var bytes: [UInt8]
    private let counterAt: Int
    private let timeAt: Int
    private let warmupAt: Int
    private let randomIDs: Bool

    /// - Parameters:
    ///   - run: distinguishes this run's events (goes into `source`).
    ///   - connection: the producer connection, part of every `id`.
    ///   - size: the line length to aim for, in bytes; `pad` fills it up. The
    ///     line is never shorter than its fixed members (about 150 bytes).
    ///   - randomIDs: the counter in `id` is scattered (see `scattered`), as
    ///     ids that are UUIDs arrive in no order; otherwise it counts up.
    init(run: String, connection: Int, size: Int, randomIDs: Bool = false) {
        let head = #"{"specversion":"1.0","type":"\#(Self.type)","source":"/bench/\#(run)","id":"c\#(connection)-"#
        var line = Array(head.utf8)
        let counterAt = line.count
        line += [UInt8](repeating: UInt8(ascii: "0"), count: Self.counterDigits)
        line += Array(#"","data":{"t":"#.utf8)
        let timeAt = line.count
        line += [UInt8](repeating: UInt8(ascii: "1"), count: Self.timeDigits)
        line += Array(#","w":"#.utf8)
        let warmupAt = line.count
        line += [UInt8(ascii: "0")]
        line += Array(#","pad":""#.utf8)
        let tail = Array(#""}}"#.utf8)
        let pad = max(0, size - line.count - tail.count)
        line += [UInt8](repeating: UInt8(ascii: "x"), count: pad)
        line += tail
        self.bytes = line
        self.counterAt = counterAt
        self.timeAt = timeAt
        self.warmupAt = warmupAt
        self.randomIDs = randomIDs
    }

    /// `counter` moved to a place that looks random, one to one on
    /// 0..<10^10: a four-round Feistel network on its two halves of five
    /// digits (each round invertible, so no two counters share a place).
    static func scattered(_ counter: Int) -> UInt64 {
        let half: UInt64 = 100_000
        var (left, right) = ((UInt64(counter) / half) % half, UInt64(counter) % half)
        for round in UInt64(1)...4 {
            // splitmix64's finalizer of the right half and the round.
            var mixed = right &+ round &* 0x9E37_79B9_7F4A_7C15
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            mixed ^= mixed >> 31
            (left, right) = (right, (left + mixed % half) % half)
        }
        return left * half + right
    }

    /// Sets the event's counter (its `id`), send time and warm-up mark.
    mutating func set(counter: Int, sentAtRealtime: UInt64, warmup: Bool = false) {
        let (counterAt, timeAt, warmupAt, randomIDs) = (self.counterAt, self.timeAt, self.warmupAt, self.randomIDs)
        bytes.withUnsafeMutableBufferPointer { line in
            Self.writeDigits(randomIDs ? Self.scattered(counter) : UInt64(counter), into: line, at: counterAt,
                             width: Self.counterDigits)
            Self.writeDigits(sentAtRealtime, into: line, at: timeAt, width: Self.timeDigits)
            line[warmupAt] = warmup ? UInt8(ascii: "1") : UInt8(ascii: "0")
        }
    }

    /// The digits of the counter in the event's `id`, as `set` wrote them
    /// (scattered with random ids).
    var idCounter: ArraySlice<UInt8> { bytes[counterAt..<counterAt + Self.counterDigits] }

    private static func writeDigits(_ value: UInt64, into line: UnsafeMutableBufferPointer<UInt8>, at offset: Int, width: Int) {
        var value = value
        var index = offset + width - 1
        while index >= offset {
            line[index] = UInt8(ascii: "0") &+ UInt8(value % 10)
            value /= 10
            index -= 1
        }
    }

    /// The send time carried by an event somewhere in `bytes` (a delivery line,
    /// a stream entry, a job body), or nil if it carries none.
    static func sentAt(in bytes: UnsafeRawBufferPointer) -> UInt64? {
        stamp(in: bytes)?.sentAt
    }

    /// The send time and warm-up mark carried by an event somewhere in
    /// `bytes`, or nil if it carries no send time of `timeDigits` digits
    /// (`SendStamp`, which the latency-probe hook reads too).
    static func stamp(in bytes: UnsafeRawBufferPointer) -> (sentAt: UInt64, warmup: Bool)? {
        guard let stamp = SendStamp.find(in: bytes), stamp.digits == timeDigits else { return nil }
        return (stamp.sentAt, stamp.warmup)
    }
}

/// The offset of the next `byte` at or after `from`, using memchr.
func memchrIndex(_ byte: UInt8, in bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
    guard from < bytes.count, let base = bytes.baseAddress else { return nil }
    guard let hit = memchr(base + from, Int32(byte), bytes.count - from) else { return nil }
    return base.distance(to: UnsafeRawPointer(hit))
}
