import Foundation
import Testing

/// `hookbus bench load` against the real broker: what it sends is what the
/// outbox stores.
@Suite("Tools: hookbus bench load")
struct BenchToolTests {
    @Test("--random-ids: every event is stored once under its own id, and the ids do not count up",
          arguments: [false, true])
    func idsAsSent(random: Bool) async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let events = 3_000
        let run = try await broker.hookbus(["bench", "load", "--connections", "2", "--window", "16", "--count", "\(events)", "--json"]
            + (random ? ["--random-ids"] : []))
        #expect(run.status == 0 && !run.signaled, "\(run)")
        let report = try JSONText.object(run.stdout)
        #expect(report["random_ids"] as? Bool == random, "\(run.stdout)")
        #expect(report["events"] as? Int == events && report["refused"] as? Int == 0, "\(run.stdout)")

        // All stored: no two events of a run share an id (a duplicate would be answered, not stored).
        let rows = try broker.outbox().rows().filter { $0.type == "bench.event" }
        #expect(rows.count == events)
        #expect(Set(rows.map(\.id)).count == events)
        // Each connection's ids, in the order they were stored (its own send order).
        for connection in ["c0-", "c1-"] {
            let counters = rows.filter { $0.id.hasPrefix(connection) }.compactMap { Int($0.id.dropFirst(connection.count)) }
            #expect(counters.count > events / 4, "\(connection): \(counters.count) events")
            let risingSteps = zip(counters, counters.dropFirst()).filter { $0 < $1 }.count
            if random {
                // Scattered: about half the steps go up, half down.
                #expect(risingSteps > counters.count / 4 && risingSteps < counters.count * 3 / 4, "\(connection): \(risingSteps) of \(counters.count)")
            } else {
                #expect(counters == Array(0..<counters.count), "\(connection) counts up from 0")
            }
        }
    }

    @Test("--warmup: events sent during the warm-up carry \"w\":1; the latency-probe hook and the pipe sink count them but leave them out of their latencies, as the generator does")
    func warmupMarked() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "probe"
            types = ["bench.*"]
            hook = "latency-probe"
            options = { report = "{dir}/probe.json" }

            [[subscribers]]
            name = "sink"
            types = ["bench.*"]
            pipe = ["\(try TestBinaries.hookbus().path)", "bench", "sink", "--report", "{dir}/sink.json"]
            """)
        // Open loop at 1,000 events/s: about 300 events in the warm-up, 300 after it.
        let run = try await bed.broker.hookbus([
            "bench", "load", "--connections", "1", "--window", "8", "--rate", "1000", "--warmup", "300ms",
            "--duration", "300ms", "--drain-timeout", "20s", "--e2e-report", scratch.path("probe.json"), "--json",
        ])
        #expect(run.status == 0 && !run.signaled, "\(run)")
        let report = try JSONText.object(run.stdout)
        let sent = try #require(report["sent"] as? Int)
        let measured = try #require(report["events"] as? Int)
        #expect(measured > 0 && measured < sent, "the generator measures only what came after its warm-up: \(run.stdout)")

        // What the outbox holds: each event marked by when it was sent.
        let rows = try bed.broker.outbox().rows().filter { $0.type == "bench.event" }
        #expect(rows.count == sent)
        let warm = rows.filter { $0.event.contains(#","w":1,"#) }.count
        let cold = rows.filter { $0.event.contains(#","w":0,"#) }.count
        #expect(warm + cold == sent && warm == sent - measured, "warm-up \(warm), after it \(cold), generator measured \(measured) of \(sent)")

        // The probe: every event received, the warm-up ones not measured.
        let probe = try JSONText.object(try #require(bed.contents("probe.json")))
        #expect(probe["received"] as? Int == sent && probe["warmup"] as? Int == warm && probe["unmeasured"] as? Int == 0
                && probe["measured"] as? Int == sent - warm, "\(probe)")
        let e2e = try #require(report["e2e_us"] as? [String: Any], "\(run.stdout)")
        #expect(e2e["count"] as? Int == sent - warm && report["e2e_missing"] as? Int == 0, "\(run.stdout)")

        // The pipe sink: the same counts once it has answered them all.
        try await bed.waitUntil("the sink reports \(sent) events") {
            bed.contents("sink.json").flatMap { try? JSONText.object($0) }?["received"] as? Int == sent
        }
        let sink = try JSONText.object(try #require(bed.contents("sink.json")))
        #expect(sink["warmup"] as? Int == warm && sink["measured"] as? Int == sent - warm, "\(sink)")
    }
}
