#if canImport(Glibc)
import Glibc
#endif

/// The send time `hookbus bench` puts first in an event's `data`,
/// `"data":{"t":<nanoseconds>,"w":<0 or 1>,...}` (no spaces), as the
/// latency-probe hook and the bench's own subscribers read it: `w` 1 marks
/// an event sent during the generator's warm-up.
public struct SendStamp: Sendable, Equatable {
    /// `t`: nanoseconds since the Unix epoch on the sender's realtime clock.
    public var sentAt: UInt64
    /// How many digits `t` has (the bench writes 19).
    public var digits: Int
    /// `,"w":1` follows `t`, then `,` or `}`. An event without `w` (from an
    /// older generator) is not a warm-up event.
    public var warmup: Bool

    /// The stamp of the first `"data":{"t":` in `bytes` (an event, a delivery
    /// line, a stream entry, a job body); nil if there is none, or if no digit
    /// or 20 and more follow it.
    public static func find(in bytes: UnsafeRawBufferPointer) -> SendStamp? {
        guard let at = firstIndex(of: marker, in: bytes) else { return nil }
        var value: UInt64 = 0
        var index = at + marker.count
        var digits = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9"), digits < 20 {
            value = value &* 10 &+ UInt64(bytes[index] - UInt8(ascii: "0"))
            index += 1
            digits += 1
        }
        guard digits > 0 && digits < 20 else { return nil }
        let rest = UnsafeRawBufferPointer(rebasing: bytes[index...])
        let warmup = rest.starts(with: warmupMarker) && rest.count > warmupMarker.count
            && (rest[warmupMarker.count] == UInt8(ascii: ",") || rest[warmupMarker.count] == UInt8(ascii: "}"))
        return SendStamp(sentAt: value, digits: digits, warmup: warmup)
    }

    private static let marker = Array(#""data":{"t":"#.utf8)
    private static let warmupMarker = Array(#","w":1"#.utf8)

    /// The offset of the first occurrence of `needle` in `haystack` (memchr for its first byte).
    static func firstIndex(of needle: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
        guard needle.count <= haystack.count, let first = needle.first, let base = haystack.baseAddress else { return nil }
        var index = 0
        let last = haystack.count - needle.count
        while index <= last {
            guard let found = memchr(base + index, Int32(first), last - index + 1) else { return nil }
            let hit = base.distance(to: UnsafeRawPointer(found))
            if needle.indices.dropFirst().allSatisfy({ haystack[hit + $0] == needle[$0] }) { return hit }
            index = hit + 1
        }
        return nil
    }
}
