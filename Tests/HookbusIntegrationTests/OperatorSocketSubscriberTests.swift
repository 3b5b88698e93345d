import Foundation
import Testing

/// Durable socket subscribers (DESIGN.md "Wire protocol"): a named subscription
/// keeps its place in SQLite, one connection holds the name at a time, and what
/// was not acknowledged when the client went away is delivered again.
@Suite("Operator: durable socket subscribers")
struct OperatorSocketSubscriberTests {
    @Test("a durable subscriber that disconnects with unacked deliveries gets them again (attempt 2) on reconnect, then the live stream; a second connection with its name is refused")
    func redeliveredOnReconnect() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let socket = bed.broker.socketPath
        let types = ["client.*"]

        let first = try SocketSession(socket)
        let accepted = try await onThread { try first.subscribe(name: "idx", types: types, window: 4) }
        try #require(accepted.ok, "\(accepted)")
        let reply = try JSONText.object(accepted.line)
        #expect(reply["op"] as? String == "subscribe" && reply["subscriber"] as? String == "idx")
        #expect(reply["durable"] as? Bool == true && JSONText.int(reply["window"]) == 4)
        let startCursor = try #require(JSONText.int(reply["cursor"]))

        // While the first connection holds "idx", a second one is refused, and says why.
        let refused = try await onThread { try SocketSession(socket).subscribe(name: "idx", types: types, window: 4) }
        #expect(!refused.ok && refused.code == "bad_request" && refused.reason == "subscriber_in_use", "\(refused)")
        #expect(refused.message?.contains("already connected on another connection") == true, "\(refused)")

        let seqs = try await bed.publish([
            EventLine.make(type: "client.added", source: "fleet", id: "a"),
            EventLine.make(type: "other.thing", source: "fleet", id: "skip"),
            EventLine.make(type: "client.renamed", source: "fleet", id: "b"),
            EventLine.make(type: "client.removed", source: "fleet", id: "c"),
        ])
        #expect(seqs.allSatisfy { $0 > startCursor }, "a new durable subscriber starts after what was stored: \(startCursor), \(seqs)")
        let wanted = [seqs[0], seqs[2], seqs[3]]

        // Three deliveries, in seq order, first attempts. Ack the first only, then vanish.
        let firstRound = try await onThread { try (0..<3).map { _ in try first.nextDelivery() } }
        #expect(firstRound.map(\.seq) == wanted, "\(firstRound)")
        #expect(firstRound.allSatisfy { $0.attempt == 1 && !$0.replay && $0.subscriber == "idx" }, "\(firstRound)")
        #expect(firstRound.map(\.eventID) == ["a", "b", "c"])
        try await onThread {
            try first.ack(firstRound[0])
            first.disconnect()
        }

        // Back again: the two unacknowledged ones come again as attempt 2, the acked one does not.
        let (second, again) = try await onThread {
            try SocketSession.resubscribe(socket, name: "idx", types: types, window: 4)
        }
        try #require(again.ok, "\(again)")
        let redelivered = try await onThread {
            let deliveries = try (0..<2).map { _ in try second.nextDelivery() }
            for delivery in deliveries { try second.ack(delivery) }
            return deliveries
        }
        #expect(Set(redelivered.map(\.seq)) == [wanted[1], wanted[2]], "\(redelivered)")
        #expect(redelivered.allSatisfy { $0.attempt == 2 && !$0.replay }, "\(redelivered)")

        // Then the stream goes on with what is published now.
        let later = try await bed.publish(EventLine.make(type: "client.added", source: "fleet", id: "d"))
        let live = try await onThread {
            let delivery = try second.nextDelivery()
            try second.ack(delivery)
            return delivery
        }
        #expect(live.seq == later && live.attempt == 1 && live.eventID == "d", "\(live)")

        try await bed.waitUntil("idx settled through \(later)") { try bed.ledger().settled("idx", through: later) }
        let stats = try #require(try bed.stats()["idx"])
        #expect(stats.kind == "socket" && stats.inFlight == 0 && stats.retrying == 0 && stats.dead == 0, "\(stats)")

        // The name is known while connected or not, so replay can target it; a replay is marked.
        let replayed = try await bed.cli("replay", "--subscriber", "idx", "--from-seq", "\(wanted[0])", "--to-seq", "\(wanted[0])")
        #expect(replayed.status == 0, "\(replayed)")
        let replay = try await onThread {
            let delivery = try second.nextDelivery()
            try second.ack(delivery)
            return delivery
        }
        #expect(replay.seq == wanted[0] && replay.replay && replay.eventID == "a", "\(replay)")
        withExtendedLifetime(second) {}
    }

    @Test("a subscriber that does not read gets no late copies: a delivery line not written before its attempt timed out is dropped, not queued with every retry")
    func noStaleLinesForAReaderThatStalls() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // 1 MB events: two of them fill what the connection takes before the client reads.
        let bed = try await DispatchBed.start(in: scratch, defaults: """
            max_line_bytes = 2097152

            [defaults]
            timeout = "1s"
            max_attempts = 3
            backoff_initial = "100ms"
            backoff_max = "100ms"
            """, subscribers: "")
        let session = try SocketSession(bed.broker.socketPath)
        try #require(try await onThread { try session.subscribe(name: nil, types: ["big.*"], window: 4) }.ok)
        let pad = String(repeating: "x", count: 1_000_000)
        let seqs = try await bed.publish((0..<4).map { EventLine.make(type: "big.e", source: "big", id: "b\($0)", data: "\"\(pad)\"") })
        // Every attempt of all four times out while the client reads nothing.
        try await bed.waitUntil("all four dead-lettered after 3 attempts", timeout: .seconds(60)) { try bed.ledger().deadLetterCount() == 4 }
        // Now read what the broker sends, acking each line, until it has sent nothing for a second.
        let received = try await onThread { () -> [Int64: [Int]] in
            var seen: [Int64: [Int]] = [:]
            var value = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(session.client.descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
            while let delivery = try? session.nextDelivery() {
                seen[delivery.seq, default: []].append(delivery.attempt)
                try? session.ack(delivery)
            }
            return seen
        }
        // What was handed to the connection before the client stalled arrives (the first
        // attempts of the first events, at most); nothing queued after it does: each of
        // the later events was sent at most once. Before, every attempt's line came.
        #expect(received.values.allSatisfy { $0.count <= 1 }, "\(received)")
        #expect((received[seqs[3]] ?? []).count <= 1 && (received[seqs[2]] ?? []).count <= 1, "\(received)")
    }
}
