import Foundation
import Testing

/// The built-in hooks `hosts-file` and `prometheus-sd` in the real broker:
/// they follow client events, and `hookbus.started` rebuilds their files from
/// the state kept in the database (DESIGN.md, "Built-in hooks").
@Suite("Dispatch: built-in hooks")
struct DispatchHookTests {
    static func client(_ type: String, _ id: String, _ data: String) -> String {
        EventLine.make(type: type, source: "fleet-manager", id: id, data: data)
    }

    static let added = [
        client("client.added", "e1", #"{"ip":"10.0.0.10","hostname":"alpha","fleet":"f1"}"#),
        client("client.added", "e2", #"{"ip":"10.0.0.9","hostname":"beta","fleet":"f1"}"#),
        client("client.added", "e3", #"{"ip":"192.168.1.2","hostname":"gamma","fleet":"f2"}"#),
        client("client.added", "e4", #"{"ip":"10.0.0.100","hostname":"delta","fleet":"f2"}"#),
    ]

    /// A rename keyed by ip (no fleet given: it keeps its fleet), a removal,
    /// and an event of another type the hooks ignore.
    static let changed = [
        client("client.hostname_changed", "e5", #"{"ip":"10.0.0.9","hostname":"beta-renamed"}"#),
        client("client.removed", "e6", #"{"ip":"10.0.0.10"}"#),
        client("client.heartbeat", "e7", #"{"ip":"10.0.0.100"}"#),
    ]

    // Sorted by address, numerically: 10.0.0.9 before 10.0.0.10 before 10.0.0.100.
    static let hostsAfterAdding = """
        10.0.0.9 beta.f1.fleet.example
        10.0.0.10 alpha.f1.fleet.example
        10.0.0.100 delta.f2.fleet.example
        192.168.1.2 gamma.f2.fleet.example

        """
    static let sdAfterAdding = #"[{"targets":["10.0.0.9:9256"],"labels":{"fleet":"f1","hostname":"beta"}},"#
        + #"{"targets":["10.0.0.10:9256"],"labels":{"fleet":"f1","hostname":"alpha"}},"#
        + #"{"targets":["10.0.0.100:9256"],"labels":{"fleet":"f2","hostname":"delta"}},"#
        + #"{"targets":["192.168.1.2:9256"],"labels":{"fleet":"f2","hostname":"gamma"}}]"# + "\n"
    static let hostsFinal = """
        10.0.0.9 beta-renamed.f1.fleet.example
        10.0.0.100 delta.f2.fleet.example
        192.168.1.2 gamma.f2.fleet.example

        """
    static let sdFinal = #"[{"targets":["10.0.0.9:9256"],"labels":{"fleet":"f1","hostname":"beta-renamed"}},"#
        + #"{"targets":["10.0.0.100:9256"],"labels":{"fleet":"f2","hostname":"delta"}},"#
        + #"{"targets":["192.168.1.2:9256"],"labels":{"fleet":"f2","hostname":"gamma"}}]"# + "\n"

    @Test("hosts-file and prometheus-sd follow added / renamed / removed clients, and a restart rebuilds the deleted files identically")
    func followClientsAndRebuild() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "hosts"
            types = ["client.*", "hookbus.started"]
            hook = "hosts-file"
            options = { path = "{dir}/hosts", domain = "fleet.example" }

            [[subscribers]]
            name = "sd"
            hook = "prometheus-sd"
            options = { path = "{dir}/sd.json", port = 9256 }
            """)
        let settled = { (seq: Int64) throws -> Bool in
            try bed.ledger().settled("hosts", through: seq) && bed.ledger().settled("sd", through: seq)
        }

        let addedSeqs = try await bed.publish(Self.added)
        try await bed.waitUntil("both hooks settled through \(addedSeqs.last!)") { try settled(addedSeqs.last!) }
        #expect(bed.contents("hosts") == Self.hostsAfterAdding)
        #expect(bed.contents("sd.json") == Self.sdAfterAdding)

        let changedSeqs = try await bed.publish(Self.changed)
        try await bed.waitUntil("both hooks settled through \(changedSeqs.last!)") { try settled(changedSeqs.last!) }
        #expect(bed.contents("hosts") == Self.hostsFinal)
        #expect(bed.contents("sd.json") == Self.sdFinal)
        // No temp file left beside them.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.root).filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty, "\(leftovers)")

        // Stopped gracefully, files deleted: hookbus.started rebuilds them from the database.
        try await bed.broker.stop()
        try FileManager.default.removeItem(atPath: scratch.path("hosts"))
        try FileManager.default.removeItem(atPath: scratch.path("sd.json"))
        try await bed.broker.restart()
        try await bed.waitUntil("the files rebuilt after a graceful restart") {
            bed.contents("hosts") != nil && bed.contents("sd.json") != nil
        }
        #expect(bed.contents("hosts") == Self.hostsFinal)
        #expect(bed.contents("sd.json") == Self.sdFinal)

        // Killed, files deleted: the same.
        try await bed.broker.kill()
        try FileManager.default.removeItem(atPath: scratch.path("hosts"))
        try FileManager.default.removeItem(atPath: scratch.path("sd.json"))
        try await bed.broker.restart()
        try await bed.waitUntil("the files rebuilt after SIGKILL and a restart") {
            bed.contents("hosts") != nil && bed.contents("sd.json") != nil
        }
        #expect(bed.contents("hosts") == Self.hostsFinal)
        #expect(bed.contents("sd.json") == Self.sdFinal)

        // Still following events after the restarts.
        let seq = try await bed.publish(Self.client("client.removed", "e8", #"{"ip":"192.168.1.2"}"#))
        try await bed.waitUntil("both hooks settled through \(seq)") { try settled(seq) }
        #expect(bed.contents("hosts") == "10.0.0.9 beta-renamed.f1.fleet.example\n10.0.0.100 delta.f2.fleet.example\n")
        let ledger = try bed.ledger()
        #expect(try ledger.deadLetters("hosts").isEmpty && ledger.deadLetters("sd").isEmpty)
    }

    @Test("a client event without data.ip is rejected by the hooks: dead-lettered at once, the files unchanged")
    func clientEventWithoutIP() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "hosts"
            hook = "hosts-file"
            options = { path = "{dir}/hosts", domain = "fleet.example" }
            """)
        let good = try await bed.publish(Self.added[0])
        let bad = try await bed.publish(Self.client("client.added", "no-ip", #"{"hostname":"nowhere","fleet":"f1"}"#))
        try await bed.waitUntil("hosts settled through \(bad)") { try bed.ledger().settled("hosts", through: bad) }
        let dead = try bed.ledger().deadLetters("hosts")
        #expect(dead.map(\.seq) == [bad] && dead.first?.attempts == 1 && dead.first?.reason == "rejected", "\(dead)")
        #expect(dead.first?.lastError.contains("has no data.ip") == true, "\(dead.first?.lastError ?? "")")
        #expect(bed.contents("hosts") == "10.0.0.10 alpha.f1.fleet.example\n", "after seq \(good)")
    }
}
