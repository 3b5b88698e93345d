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

    @Test("many events committed together reach a subscriber whole and in seq order (the lines of a commit go out in writes of up to 64 KiB)")
    func manyInOrder() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: "")
        let session = try SocketSession(bed.broker.socketPath)
        let accepted = try await onThread { try session.subscribe(name: nil, types: ["bulk.*"], window: 1024) }
        try #require(accepted.ok, "\(accepted)")
        // 1 KB events, up to 64 in flight: a commit of most of them passes 64 KiB
        // (how the lines are split is LineQueueTests' own; here: none lost or reordered).
        let pad = String(repeating: "x", count: 1000)
        let seqs = try await bed.publish((0..<600).map {
            EventLine.make(type: "bulk.item", source: "bulk", id: "b\($0)", data: #"{"pad":"\#(pad)"}"#)
        })
        let got = try await onThread {
            try (0..<600).map { _ in
                let delivery = try session.nextDelivery()
                try session.ack(delivery)
                return delivery
            }
        }
        #expect(got.map(\.seq) == seqs, "every event once, in seq order")
        #expect(got.map(\.eventID) == (0..<600).map { "b\($0)" })
        #expect(got.allSatisfy { $0.attempt == 1 }, "no delivery was retried")
        withExtendedLifetime(session) {}
    }

    @Test("a subscriber that stops reading is disconnected once two windows of lines wait behind its full socket; its deliveries are retried, and it gets them after reconnecting")
    func disconnectedWhenItStopsReading() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // 1 MB events: one fills what the connection takes before the client reads.
        let bed = try await DispatchBed.start(in: scratch, defaults: """
            max_line_bytes = 2097152

            [defaults]
            timeout = "1s"
            max_attempts = 20
            backoff_initial = "50ms"
            backoff_max = "50ms"
            """, subscribers: "")
        let session = try SocketSession(bed.broker.socketPath)
        try #require(try await onThread { try session.subscribe(name: "slow", types: ["big.*"], window: 2) }.ok)
        let pad = String(repeating: "x", count: 1_000_000)
        let seqs = try await bed.publish((0..<2).map { EventLine.make(type: "big.e", source: "big", id: "b\($0)", data: "\"\(pad)\"") })
        // The client reads nothing. Each timed-out attempt queues its retry's line; past
        // four lines waiting (window 2), the broker closes the connection and says why.
        try await bed.waitUntil("the broker closes the subscriber that stopped reading", timeout: .seconds(60)) {
            try bed.ledger().retries("slow").contains { $0.lastError?.contains("stopped reading") == true }
        }
        #expect(bed.broker.log.contains("closing a socket subscriber that stopped reading"), "\(bed.broker.log)")
        // The connection is closed: reading drains what the broker had written, then meets its end.
        let ended = try await onThread { () -> Bool in
            var value = timeval(tv_sec: Int(BrokerProcess.deadline.components.seconds), tv_usec: 0)
            setsockopt(session.client.descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = read(session.client.descriptor, &buffer, buffer.count)
                if count == 0 { return true }
                if count < 0 { return false }
            }
        }
        #expect(ended, "the broker kept the connection of a subscriber that stopped reading open")
        // Nothing is lost: reconnected, the subscriber gets both events again and acks them
        // (after a restart with a timeout a loaded machine cannot miss with 1 MB lines).
        _ = try scratch.write("hookbus.toml", "durability = \"normal\"\nmax_line_bytes = 2097152\n\n[defaults]\ntimeout = \"60s\"\n")
        try await bed.broker.stop()
        try await bed.broker.restart()
        let (again, reply) = try await onThread { try SocketSession.resubscribe(bed.broker.socketPath, name: "slow", types: ["big.*"], window: 2) }
        try #require(reply.ok, "\(reply)")
        let redelivered = try await onThread { () -> [Int64: Int] in
            var seen: [Int64: Int] = [:]
            while seen.count < 2 {
                let delivery = try again.nextDelivery()
                seen[delivery.seq] = delivery.attempt
                try again.ack(delivery)
            }
            return seen
        }
        #expect(Set(redelivered.keys) == Set(seqs) && redelivered.values.allSatisfy { $0 > 1 }, "\(redelivered)")
        try await bed.waitUntil("both acknowledged") { try bed.ledger().settled("slow", through: seqs[1]) }
        withExtendedLifetime(again) {}
    }

    @Test("a nack's error with newlines and escape sequences cannot forge lines in the broker's log: they are escaped")
    func nackErrorCannotForgeLogLines() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: "")
        let session = try SocketSession(bed.broker.socketPath)
        try #require(try await onThread { try session.subscribe(name: "forger", types: ["x.*"], window: 1) }.ok)
        _ = try await bed.publish(EventLine.make(type: "x.y", source: "s", id: "1"))
        let delivery = try await onThread { try session.nextDelivery() }
        let forged = "2026-11-24T00:00:00+0000 critical hookbusd: FORGED"
        try session.client.send(line: #"{"op":"nack","delivery":\#(delivery.delivery),"retry":false,"error":"oops\n\#(forged)\u001b[2J"}"#)
        try await bed.waitUntil("the dead letter logged") { bed.broker.log.contains("FORGED") }
        let lines = bed.broker.log.split(separator: "\n")
        #expect(!lines.contains { $0.hasPrefix("2026-11-24T00:00:00") }, "\(bed.broker.log)")
        #expect(lines.contains { $0.contains(#"oops\n\#(forged)\x1B[2J"#) }, "\(bed.broker.log)")
        #expect(!bed.broker.log.contains("\u{1B}"))
    }

    @Test("stats of a durable socket subscriber count since the broker started, across its reconnections")
    func statsSurviveReconnection() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, subscribers: "")
        let first = try SocketSession(bed.broker.socketPath)
        try #require(try await onThread { try first.subscribe(name: "cnt", types: ["x.*"], window: 2) }.ok)
        _ = try await bed.publish([EventLine.make(type: "x.a", source: "s", id: "1"), EventLine.make(type: "x.b", source: "s", id: "2")])
        let deliveries = try await onThread { try (0..<2).map { _ in try first.nextDelivery() } }
        try first.ack(deliveries[0])
        try first.client.send(line: #"{"op":"nack","delivery":\#(deliveries[1].delivery),"retry":false,"error":"bad event"}"#)
        try await bed.waitUntil("one delivered, one dead") {
            let stats = try bed.stats()["cnt"]
            return stats?.delivered == 1 && stats?.dead == 1
        }
        first.disconnect()
        let (second, reply) = try await onThread { try SocketSession.resubscribe(bed.broker.socketPath, name: "cnt", types: ["x.*"], window: 2) }
        try #require(reply.ok, "\(reply)")
        let stats = try #require(try bed.stats()["cnt"])
        #expect(stats.delivered == 1 && stats.failedAttempts == 1 && stats.dead == 1 && stats.lastError == "bad event"
                && stats.p50 != nil, "\(stats)")
        withExtendedLifetime(second) {}
    }
}
