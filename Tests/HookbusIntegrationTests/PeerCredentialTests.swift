import Foundation
import Testing

/// The broker stores who sent each event (SO_PEERCRED) with the event.
@Suite("Peer credentials")
struct PeerCredentialTests {
    @Test("an event published over the socket carries the producer's uid, gid and pid")
    func storedWithEvent() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let client = try broker.connect()
        let reply = try client.call(EventLine.make(source: "creds", id: "e1"))
        try #require(reply.ok, "\(reply)\n\(broker.log)")

        let row = try #require(try broker.outbox().row(source: "creds", id: "e1"))
        #expect(row.seq == reply.seq)
        #expect(row.producerUID == Int64(getuid()))
        #expect(row.producerGID == Int64(getgid()))
        #expect(row.producerPID == Int64(getpid()))
    }

    @Test("an event without source gets one derived from the producer's uid")
    func defaultSource() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let reply = try broker.connect().call(#"{"type":"no.source"}"#)
        try #require(reply.ok, "\(reply)")
        let rows = try broker.outbox().rows()
        #expect(rows.count == 1)
        #expect(rows.first?.source == "urn:hookbus:uid:\(getuid())")
        #expect(rows.first?.id == reply.id)
    }
}
