import Foundation
import HookbusCore
import Histogram

/// Latency histograms: nanoseconds, three significant digits, up to an hour.
enum BenchLatency {
    static func histogram() -> Histogram<UInt64> {
        Histogram(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
    }
}

/// Percentiles of one latency histogram, in microseconds.
struct BenchLatencySummary: Sendable {
    var count: Int
    var p50: Double
    var p99: Double
    var p999: Double
    var max: Double

    init(_ histogram: Histogram<UInt64>) {
        count = Int(histogram.totalCount)
        let micros = { (value: UInt64) in Double(value) / 1000 }
        p50 = micros(histogram.valueAtPercentile(50))
        p99 = micros(histogram.valueAtPercentile(99))
        p999 = micros(histogram.valueAtPercentile(99.9))
        max = micros(histogram.max)
    }

    init(count: Int, p50: Double, p99: Double, p999: Double, max: Double) {
        (self.count, self.p50, self.p99, self.p999, self.max) = (count, p50, p99, p999, max)
    }

    func write(into out: inout JSONWriter) {
        out.beginObject()
        out.key("count"); out.int(count)
        out.key("p50"); out.double(Self.rounded(p50))
        out.key("p99"); out.double(Self.rounded(p99))
        out.key("p999"); out.double(Self.rounded(p999))
        out.key("max"); out.double(Self.rounded(max))
        out.endObject()
    }

    var text: String {
        "p50 \(Self.spelled(p50))  p99 \(Self.spelled(p99))  p99.9 \(Self.spelled(p999))  max \(Self.spelled(max))  (\(count))"
    }

    static func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }

    static func spelled(_ micros: Double) -> String {
        if micros >= 1_000_000 { return String(format: "%.2fs", micros / 1_000_000) }
        if micros >= 1000 { return String(format: "%.2fms", micros / 1000) }
        return String(format: "%.0fµs", micros)
    }
}

/// What `hookbus bench` prints: one run against one target.
struct BenchReport {
    struct Drain {
        var subscriber: String
        var delivered: Int
        var seconds: Double
        var complete: Bool
    }

    var target: String
    var address: String
    var connections: Int
    var window: Int
    var size: Int
    var randomIDs: Bool
    var rate: Int?
    var warmup: Double
    /// Measured events acknowledged as stored, and the time they took.
    var events: Int
    var seconds: Double
    var sent: Int
    var refused: Int
    var ack: BenchLatencySummary
    var e2e: BenchLatencySummary?
    var e2eVia: String?
    /// Events the subscriber had not received when it stopped waiting; their
    /// latency is not in `e2e`, which therefore understates it.
    var e2eMissing: Int?
    var drain: Drain?
    var failures: [String]
    var firstError: String?

    var eventsPerSecond: Double { seconds > 0 ? Double(events) / seconds : 0 }

    var json: String {
        var out = JSONWriter(capacity: 512)
        out.beginObject()
        out.key("target"); out.string(target)
        out.key("address"); out.string(address)
        out.key("connections"); out.int(connections)
        out.key("window"); out.int(window)
        out.key("size"); out.int(size)
        out.key("random_ids"); out.bool(randomIDs)
        out.key("rate"); if let rate { out.int(rate) } else { out.null() }
        out.key("warmup_s"); out.double(warmup)
        out.key("events"); out.int(events)
        out.key("seconds"); out.double((seconds * 1000).rounded() / 1000)
        out.key("events_per_s"); out.double(eventsPerSecond.rounded())
        out.key("sent"); out.int(sent)
        out.key("refused"); out.int(refused)
        out.key("ack_us"); ack.write(into: &out)
        out.key("e2e_us"); if let e2e { e2e.write(into: &out) } else { out.null() }
        out.key("e2e_via"); if let e2eVia { out.string(e2eVia) } else { out.null() }
        out.key("e2e_missing"); if let e2eMissing { out.int(e2eMissing) } else { out.null() }
        out.key("drain")
        if let drain {
            out.beginObject()
            out.key("subscriber"); out.string(drain.subscriber)
            out.key("delivered"); out.int(drain.delivered)
            out.key("seconds"); out.double((drain.seconds * 1000).rounded() / 1000)
            out.key("per_s"); out.double(drain.seconds > 0 ? (Double(drain.delivered) / drain.seconds).rounded() : 0)
            out.key("complete"); out.bool(drain.complete)
            out.endObject()
        } else {
            out.null()
        }
        out.key("failures"); out.beginArray(); for failure in failures { out.string(failure) }; out.endArray()
        out.key("first_error"); if let firstError { out.string(firstError) } else { out.null() }
        out.endObject()
        return String(decoding: out.bytes, as: UTF8.self)
    }

    var text: String {
        var lines: [String] = []
        let offered = rate.map { ", offered \($0)/s" } ?? ""
        lines.append("\(target) at \(address): \(connections) connection(s) × window \(window), \(size)-byte events\(randomIDs ? " with ids in random order" : "")\(offered)")
        lines.append(String(format: "  acknowledged  %d events in %.2fs = %.0f events/s", events, seconds, eventsPerSecond)
            + (refused > 0 ? " (\(refused) refused)" : ""))
        lines.append("  ack latency   \(ack.text)")
        if let e2e { lines.append("  end to end    \(e2e.text) via \(e2eVia ?? "-")") }
        if let e2eMissing, e2eMissing > 0 {
            lines.append("  end to end    \(e2eMissing) event(s) not delivered in time, not counted above")
        }
        if let drain {
            let perSecond = drain.seconds > 0 ? Double(drain.delivered) / drain.seconds : 0
            lines.append("  drained       \(drain.delivered) deliveries to \(drain.subscriber) in "
                + String(format: "%.2fs = %.0f/s", drain.seconds, perSecond) + (drain.complete ? "" : " (incomplete)"))
        }
        if let firstError { lines.append("  first refusal: \(firstError)") }
        for failure in failures { lines.append("  failure: \(failure)") }
        return lines.joined(separator: "\n")
    }
}
