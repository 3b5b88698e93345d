#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Generates event ids for events that arrive without one: ULIDs (26 characters
/// of Crockford base32, 48 bits of milliseconds then 80 random bits), so ids
/// sort by creation time. Within one millisecond the random part is incremented,
/// so ids from one broker are strictly increasing.
public final class EventIDGenerator: Sendable {
    private struct State {
        var lastMillis: UInt64 = 0
        var high: UInt16 = 0
        var low: UInt64 = 0
    }

    private let state = Mutex(State())
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    public init() {}

    public func next(nowMicros: Int64 = Timestamp.nowMicros()) -> String {
        let millis = UInt64(max(0, nowMicros / 1000))
        let (time, high, low) = state.withLock { state -> (UInt64, UInt16, UInt64) in
            if millis > state.lastMillis {
                state.lastMillis = millis
                var generator = SystemRandomNumberGenerator()
                state.high = UInt16.random(in: 0...UInt16.max, using: &generator)
                state.low = UInt64.random(in: 0...(UInt64.max >> 1), using: &generator)
            } else {
                // Same (or earlier) millisecond: keep the time, step the random part.
                state.low &+= 1
                if state.low == 0 { state.high &+= 1 }
            }
            return (state.lastMillis, state.high, state.low)
        }
        var out = [UInt8](repeating: 0, count: 26)
        // 48-bit time -> 10 characters (50 bits, top 2 zero).
        for index in 0..<10 {
            out[9 - index] = Self.alphabet[Int((time >> (5 * UInt64(index))) & 31)]
        }
        // 80 random bits -> 16 characters.
        for index in 0..<16 {
            let shift = 5 * index
            let value: UInt64
            if shift < 64 {
                var bits = low >> UInt64(shift)
                if shift > 59 { bits |= UInt64(high) << UInt64(64 - shift) }
                value = bits & 31
            } else {
                value = (UInt64(high) >> UInt64(shift - 64)) & 31
            }
            out[25 - index] = Self.alphabet[Int(value)]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
