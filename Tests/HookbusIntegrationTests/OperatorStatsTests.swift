import Foundation
import Testing

/// `hookbus stats`: per-subscriber counters as the broker sees them.
@Suite("Operator: hookbus stats")
struct OperatorStatsTests {
    @Test("stats --json reflects deliveries, a pending retry and a dead letter; the table names every subscriber; a purge lowers the dead count")
    func reflectsDelivery() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // "slow" fails and waits ten minutes before its next try: a retry that stays pending.
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "good"
            types = ["s.ok"]
            exec = ["{examples}/record.sh"]
            env = { RECORD_DIR = "{dir}/rec" }

            [[subscribers]]
            name = "rejects"
            types = ["s.bad"]
            exec = ["{examples}/fail.sh"]
            env = { FAIL_STATUS = "65" }

            [[subscribers]]
            name = "slow"
            types = ["s.slow"]
            exec = ["{examples}/fail.sh"]
            env = { FAIL_STATUS = "75" }
            max_attempts = 5
            backoff_initial = "10m"
            backoff_max = "10m"
            """)
        let seqs = try await bed.publish([
            EventLine.make(type: "s.ok", source: "st", id: "1"),
            EventLine.make(type: "s.bad", source: "st", id: "2"),
            EventLine.make(type: "s.slow", source: "st", id: "3"),
            EventLine.make(type: "s.ok", source: "st", id: "4"),
        ])
        try await bed.waitUntil("good delivered both, rejects dead-lettered, slow waiting to retry") {
            let ledger = try bed.ledger()
            return try ledger.settled("good", through: seqs[3]) && ledger.deadLetters("rejects").count == 1
                && ledger.retries("slow").count == 1
        }

        let reply = try #require(try await bed.cliJSON("stats") as? [String: Any])
        #expect(reply["ok"] as? Bool == true && reply["op"] as? String == "stats")
        let outbox = try #require(reply["outbox"] as? [String: Any])
        #expect((JSONText.int(outbox["events"]) ?? 0) >= 4 && (JSONText.int(outbox["last_seq"]) ?? 0) >= seqs[3], "\(outbox)")
        #expect((JSONText.int(outbox["database_bytes"]) ?? 0) > 0)
        var byName: [String: [String: Any]] = [:]
        for subscriber in reply["subscribers"] as? [[String: Any]] ?? [] { byName[subscriber["name"] as? String ?? ""] = subscriber }
        func counts(_ name: String) -> [String: Int64?] {
            let entry = byName[name] ?? [:]
            return ["delivered": JSONText.int(entry["delivered"]), "failed_attempts": JSONText.int(entry["failed_attempts"]),
                    "retrying": JSONText.int(entry["retrying"]), "dead": JSONText.int(entry["dead"])]
        }
        #expect(counts("good") == ["delivered": 2, "failed_attempts": 0, "retrying": 0, "dead": 0], "\(byName["good"] ?? [:])")
        #expect(counts("rejects") == ["delivered": 0, "failed_attempts": 1, "retrying": 0, "dead": 1], "\(byName["rejects"] ?? [:])")
        #expect(counts("slow") == ["delivered": 0, "failed_attempts": 1, "retrying": 1, "dead": 0], "\(byName["slow"] ?? [:])")
        #expect(byName["good"]?["kind"] as? String == "exec" && byName["good"]?["last_error"] is NSNull)
        #expect(JSONText.int((byName["good"]?["delivery_us"] as? [String: Any])?["p50"]) != nil, "a delivery time once something was delivered")
        #expect((byName["rejects"]?["last_error"] as? String)?.contains("fail.sh: cannot deliver seq \(seqs[1]) (attempt 1)") == true)
        #expect((byName["slow"]?["last_error"] as? String)?.contains("fail.sh: cannot deliver seq \(seqs[2]) (attempt 1)") == true)
        #expect(JSONText.int(byName["good"]?["cursor"]).map { $0 >= seqs[3] } == true)

        let table = try await bed.cli("stats")
        #expect(table.status == 0, "\(table)")
        #expect(table.stdoutLines.first?.hasPrefix("outbox: ") == true, "\(table)")
        #expect(table.stdoutLines.dropFirst().first?.hasPrefix("SUBSCRIBER") == true, "\(table)")
        for name in ["good", "rejects", "slow"] {
            #expect(table.stdoutLines.contains { $0.hasPrefix(name + " ") && $0.contains(" exec ") }, "\(table)")
        }

        let purged = try await bed.cli("dlq", "purge", "--all", "--subscriber", "rejects")
        #expect(purged.status == 0, "\(purged)")
        let after = try #require(try await bed.cliJSON("stats") as? [String: Any])
        let rejects = (after["subscribers"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "rejects" }
        #expect(JSONText.int(rejects?["dead"]) == 0, "\(rejects ?? [:])")
    }
}
