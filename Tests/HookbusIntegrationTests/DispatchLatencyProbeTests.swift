import Foundation
import Testing

/// The built-in `latency-probe` hook: publish-to-delivery latency measured
/// inside the broker, for `hookbus bench --e2e-report`. It also shows that a
/// hook's `run()` lasts as long as dispatch: the report is written from there,
/// and written once more when the broker stops.
@Suite("Dispatch: latency-probe hook")
struct DispatchLatencyProbeTests {
    static func report(_ path: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    @Test("events with data.t are measured, those marked as warm-up (\"w\":1) and those without counted only; the report is rewritten while the broker runs")
    func measuresAndReports() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "probe"
            types = ["probe.*"]
            hook = "latency-probe"
            options = { report = "{dir}/probe.json" }
            """)
        let path = scratch.root + "/probe.json"
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        // Sent "5 ms ago", so every latency is at least 5,000 µs.
        let sentAt = (UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)) - 5_000_000
        var lines = (0..<20).map { EventLine.make(type: "probe.tick", source: "probe", id: "t\($0)", data: #"{"t":\#(sentAt),"pad":"x"}"#) }
        lines.append(EventLine.make(type: "probe.tick", source: "probe", id: "no-time", data: #"{"n":1}"#))
        // Sent during a warm-up an hour ago: counted, and the latencies stay under a minute.
        lines.append(EventLine.make(type: "probe.tick", source: "probe", id: "warm", data: #"{"t":\#(sentAt - 3_600_000_000_000),"w":1,"pad":"x"}"#))
        lines.append(EventLine.make(type: "other.thing", source: "probe", id: "not-mine", data: #"{"t":1}"#))
        _ = try await bed.publish(lines)

        try await bed.waitUntil("the probe reports 22 events") {
            (Self.report(path)?["received"] as? Int) == 22
        }
        let first = try #require(Self.report(path))
        #expect(first["unmeasured"] as? Int == 1 && first["warmup"] as? Int == 1 && first["measured"] as? Int == 20, "\(first)")
        let p50 = try #require(first["p50"] as? Double)
        let maximum = try #require(first["max"] as? Double)
        #expect(p50 >= 5000 && maximum >= p50 && maximum < 60_000_000, "latencies in µs from data.t: \(first)")

        // A later report counts everything since the start, not only what came after the last one.
        _ = try await bed.publish((0..<3).map {
            EventLine.make(type: "probe.tick", source: "probe", id: "later\($0)", data: #"{"t":\#(sentAt),"pad":"y"}"#)
        })
        try await bed.waitUntil("the probe reports 25 events") {
            (Self.report(path)?["received"] as? Int) == 25
        }
        let second = try #require(Self.report(path))
        #expect(second["unmeasured"] as? Int == 1 && second["warmup"] as? Int == 1, "\(second)")
        #expect((second["p50"] as? Double ?? 0) >= 5000, "\(second)")

    }

    @Test("with a long interval the report is written only when dispatch stops, and counts everything delivered")
    func finalReportAtStop() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "probe"
            types = ["probe.*"]
            hook = "latency-probe"
            options = { report = "{dir}/probe.json", interval_ms = 3600000 }
            """)
        let path = scratch.root + "/probe.json"
        let seqs = try await bed.publish((0..<5).map {
            EventLine.make(type: "probe.tock", source: "probe", id: "k\($0)", data: #"{"t":1700000000000000000}"#)
        })
        try await bed.waitUntil("the probe delivered everything") { try bed.ledger().settled("probe", through: seqs.last!) }
        #expect(Self.report(path) == nil, "no periodic report within an hour's interval")
        #expect(try await bed.broker.stop() == 0)
        let last = try #require(Self.report(path), "the report written when dispatch stopped")
        #expect(last["received"] as? Int == 5 && last["unmeasured"] as? Int == 0, "\(last)")
    }
}
