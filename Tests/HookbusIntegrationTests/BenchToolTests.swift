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
}
