import Foundation
import HookbusTestSupport
import Testing
@testable import HookbusCore

@Suite("Timestamp")
struct TimestampTests {
    @Test("RFC 3339 times parse to microseconds since the epoch", arguments: [
        ("1970-01-01T00:00:00Z", Int64(0)),
        ("1970-01-01T00:00:00.000001Z", 1),
        ("2026-11-23T04:30:00Z", 1_795_408_200_000_000),
        ("2026-11-23T04:30:00.123456Z", 1_795_408_200_123_456),
        ("2026-11-23T04:30:00.1234569Z", 1_795_408_200_123_456),
        ("2026-11-23T04:30:00.5Z", 1_795_408_200_500_000),
        ("2026-11-23T05:30:00+01:00", 1_795_408_200_000_000),
        ("2026-11-22T23:00:00-05:30", 1_795_408_200_000_000),
        ("2026-11-23t04:30:00z", 1_795_408_200_000_000),
        ("2000-02-29T12:00:00Z", 951_825_600_000_000),
    ])
    func parse(_ text: String, micros: Int64) {
        #expect(Timestamp.parse(text) == micros)
    }

    @Test("parsing agrees with Foundation's ISO 8601 parser", arguments: [
        "2026-11-23T04:30:00Z", "1999-12-31T23:59:59+14:00", "2024-02-29T00:00:00-12:00", "2100-03-01T00:00:00Z",
    ])
    func agreesWithFoundation(_ text: String) throws {
        let date = try #require(ISO8601DateFormatter().date(from: text))
        #expect(Timestamp.parse(text) == Int64(date.timeIntervalSince1970) * 1_000_000)
    }

    @Test("invalid times are refused", arguments: [
        "", "yesterday", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-02-30T00:00:00Z", "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z", "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z", "2026-01-01T00:00:61Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+01",
        "2026-01-01T00:00:00+0100", "2026-01-01T00:00:00+24:00", "2026-1-01T00:00:00Z", "2026-01-01T00:00:00ZZ",
        "+2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5",
    ])
    func invalid(_ text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    @Test("format writes UTC with six fraction digits")
    func format() {
        #expect(Timestamp.format(micros: 0) == "1970-01-01T00:00:00.000000Z")
        #expect(Timestamp.format(micros: 1_795_408_200_123_456) == "2026-11-23T04:30:00.123456Z")
        #expect(Timestamp.format(micros: 951_825_600_000_007) == "2000-02-29T12:00:00.000007Z")
    }

    @Test("format and parse round-trip", arguments: [UInt64(11), 12])
    func roundTrip(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        for _ in 0..<2_000 {
            // Up to the year 9999.
            let micros = Int64.random(in: 0...253_402_300_799_999_999, using: &random)
            let text = Timestamp.format(micros: micros)
            #expect(Timestamp.parse(text) == micros, "\(text)")
        }
    }

    @Test("now is a plausible time")
    func now() {
        let now = Timestamp.nowMicros()
        #expect(now > 1_700_000_000_000_000)
        #expect(Timestamp.parse(Timestamp.format(micros: now)) == now)
    }
}
