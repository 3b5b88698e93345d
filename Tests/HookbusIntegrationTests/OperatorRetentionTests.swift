import Foundation
import Testing

/// Retention (DESIGN.md "Storage"): delivered events older than `retention` are
/// pruned in the background; what is still owed to a subscriber stays.
@Suite("Operator: retention")
struct OperatorRetentionTests {
    static let retention: Duration = .seconds(2)

    /// Fails (exit 75, retried) until the marker file exists.
    static let gate = """
        #!/bin/sh
        cat > /dev/null
        if [ -f "$GATE_FIXED" ]; then exit 0; fi
        echo "gate.sh: not yet" >&2
        exit 75
        """

    @Test("retention prunes delivered old events and keeps those with a dead letter, a pending retry, or not yet delivered to an away durable subscriber")
    func prunesDeliveredKeepsOwed() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let gatePath = try scratch.write("gate.sh", Self.gate)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: gatePath)
        // slow and gate run with concurrency 2: with 1, a delivery waiting for its
        // retry holds the subscriber's cursor (strict order), and the lowest cursor
        // bounds what retention may prune, so every later event would stay too.
        let bed = try await OperatorBed.start(in: scratch, settings: #"retention = "2s""#, subscribers: """
            [[subscribers]]
            name = "keep"
            types = ["good.*"]
            exec = ["{examples}/record.sh"]
            env = { RECORD_DIR = "{dir}/rec" }

            [[subscribers]]
            name = "rejects"
            types = ["bad.*"]
            exec = ["{examples}/fail.sh"]
            env = { FAIL_STATUS = "65" }

            [[subscribers]]
            name = "slow"
            types = ["slow.*"]
            exec = ["{examples}/fail.sh"]
            env = { FAIL_STATUS = "75" }
            max_attempts = 5
            backoff_initial = "10m"
            backoff_max = "10m"
            concurrency = 2

            [[subscribers]]
            name = "gate"
            types = ["gate.*"]
            exec = ["{dir}/gate.sh"]
            max_attempts = 1000
            concurrency = 2
            env = { GATE_FIXED = "{dir}/fixed" }
            """)
        // The owed ones first, so they are the oldest.
        let seqs = try await bed.publish([
            EventLine.make(type: "bad.thing", source: "r", id: "dead"),
            EventLine.make(type: "slow.thing", source: "r", id: "retrying"),
            EventLine.make(type: "gate.thing", source: "r", id: "gated"),
            EventLine.make(type: "good.one", source: "r", id: "g1"),
            EventLine.make(type: "good.two", source: "r", id: "g2"),
        ])
        let (dead, retrying, gated, good) = (seqs[0], seqs[1], seqs[2], [seqs[3], seqs[4]])
        try await bed.waitUntil("a dead letter, two pending retries, the good ones delivered") {
            let ledger = try bed.ledger()
            return try ledger.deadLetters("rejects").count == 1 && ledger.retries("slow").count == 1
                && !ledger.retries("gate").isEmpty && ledger.settled("keep", through: good[1])
        }

        // A durable socket subscriber that comes once, then stays away: what is
        // published after it left is owed to it.
        let socket = bed.broker.socketPath
        let away = try await onThread {
            let session = try SocketSession(socket)
            let reply = try session.subscribe(name: "away", types: ["away.*"], window: 1)
            session.disconnect()
            return reply
        }
        try #require(away.ok, "\(away)")
        try await bed.waitUntil("away released") { try !bed.connectedSocketSubscribers().contains("away") }
        let owed = try await bed.publish(EventLine.make(type: "away.thing", source: "r", id: "owed"))

        try await bed.waitUntil("the delivered events pruned") { try bed.storedSeqs().isDisjoint(with: good) }
        var stored = try bed.storedSeqs()
        #expect(stored.isSuperset(of: [dead, retrying, gated, owed]), "stored: \(stored.sorted())")

        // Let the owed event age past the retention, then let gate succeed: its
        // event can go only in a pruning pass that runs after that, a pass in
        // which the owed event is old enough too.
        try await bed.waitUntil("the owed event older than the retention") {
            try (bed.age(ofSeq: owed) ?? .zero) > Self.retention + .milliseconds(500)
        }
        try #require(FileManager.default.createFile(atPath: scratch.path("fixed"), contents: nil))
        try await bed.waitUntil("gate delivered and its event pruned") { try !bed.storedSeqs().contains(gated) }
        stored = try bed.storedSeqs()
        #expect(stored.contains(dead), "an event with a dead letter is kept: \(stored.sorted())")
        #expect(stored.contains(retrying), "an event with a pending retry is kept: \(stored.sorted())")
        #expect(stored.contains(owed), "an event a durable subscriber has not had yet is kept: \(stored.sorted())")
        #expect(try bed.ledger().deadLetters("rejects").count == 1 && bed.ledger().retries("slow").count == 1)

        // Back, it gets the event; acknowledged, the event goes too.
        let (session, back) = try await onThread { try SocketSession.resubscribe(socket, name: "away", types: ["away.*"], window: 1) }
        try #require(back.ok, "\(back)")
        let delivery = try await onThread {
            let delivery = try session.nextDelivery()
            try session.ack(delivery)
            return delivery
        }
        #expect(delivery.seq == owed && delivery.eventID == "owed", "\(delivery)")
        try await bed.waitUntil("the owed event pruned once delivered") { try !bed.storedSeqs().contains(owed) }
        #expect(try bed.storedSeqs().isSuperset(of: [dead, retrying]))
        withExtendedLifetime(session) {}
    }
}
