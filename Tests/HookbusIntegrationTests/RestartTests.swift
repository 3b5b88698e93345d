import Foundation
import Testing

/// A graceful restart keeps every event and the idempotency of `(source, id)`.
@Suite("Restart")
struct RestartTests {
    @Test("after SIGTERM and a restart, a resend gets the original seq with duplicate:true; new events get higher seqs")
    func keepsEventsAndDedupe() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let ids = (0..<5).map { "r\($0)" }
        var first: [String: Int64] = [:]
        do {
            let client = try broker.connect()
            for id in ids {
                let reply = try client.call(EventLine.make(type: "restart.test", source: "restart", id: id))
                try #require(reply.ok && !reply.duplicate, "\(reply)")
                let seq = try #require(reply.seq)
                first[id] = seq
            }
            // Same id, other source: another event.
            let other = try client.call(EventLine.make(type: "restart.test", source: "elsewhere", id: "r0"))
            #expect(other.ok && !other.duplicate, "\(other)")
            // A resend before the restart is already a duplicate.
            let again = try client.call(EventLine.make(type: "restart.test", source: "restart", id: "r0"))
            #expect(again.duplicate && again.seq == first["r0"], "\(again)")
        }

        let status = try await broker.stop()
        #expect(status == 0, "\(broker.log)")
        let highestBefore = try broker.outbox().maxSeq()
        #expect(!FileManager.default.fileExists(atPath: broker.socketPath), "the socket file outlived a graceful stop")
        try await broker.restart()

        let client = try broker.connect()
        for id in ids {
            let reply = try client.call(EventLine.make(type: "restart.test", source: "restart", id: id))
            #expect(reply.ok, "\(reply)")
            #expect(reply.duplicate, "resend of \(id) after restart was stored again: \(reply)")
            #expect(reply.seq == first[id], "resend of \(id): \(reply)")
            #expect(reply.id == id)
        }
        var previous = highestBefore
        for id in ["r5", "r6"] {
            let reply = try client.call(EventLine.make(type: "restart.test", source: "restart", id: id))
            #expect(reply.ok && !reply.duplicate, "\(reply)")
            let seq = try #require(reply.seq)
            #expect(seq > previous, "new event \(id) got seq \(seq), not above \(previous)")
            previous = seq
        }

        let rows = try broker.outbox().rows()
        #expect(rows.count == 8)
        #expect(rows.filter { $0.source == "restart" }.count == 7)
        for id in ids { #expect(try broker.outbox().row(source: "restart", id: id)?.seq == first[id]) }
    }
}
