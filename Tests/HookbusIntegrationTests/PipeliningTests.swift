import Foundation
import HookbusClient
import Testing

/// Events are answered on the event loop while commands go through the async
/// connection (IngestHandler): whatever the mix, every line of a connection is
/// answered once, in the order it came, and nothing answered is lost when the
/// client closes its side.
@Suite("Pipelining: events and commands on one connection")
struct PipeliningTests {
    @Test("3,000 lines of events, pings, stats, acks without a subscription and bad lines, written in odd-sized chunks: one reply per line, in order")
    func mixedStreamInOrder() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let client = try broker.connect()

        enum Expect { case event(String), ping, stats, notSubscribed, invalid }
        var expected: [Expect] = []
        var stream: [UInt8] = []
        for index in 0..<3000 {
            let line: String
            switch index % 97 {
            case 13: line = #"{"op":"ping"}"#; expected.append(.ping)
            case 41: line = #"{"op":"stats"}"#; expected.append(.stats)
            case 57: line = #"{"op":"ack","delivery":1}"#; expected.append(.notSubscribed)
            case 77: line = "not json"; expected.append(.invalid)
            default:
                line = EventLine.make(type: "pipe.test", source: "pipelining", id: "e\(index)")
                expected.append(.event("e\(index)"))
            }
            stream += Array(line.utf8) + [0x0A]
        }
        // Chunks that split lines anywhere, so batches hold every mix, written
        // while the replies are read on another thread.
        let box = UncheckedBox(client)
        let bytes = stream
        async let writing: [Void] = onThreads(1) { _ in
            var offset = 0
            var size = 1
            while offset < bytes.count {
                let end = min(bytes.count, offset + size)
                try box.value.write(Array(bytes[offset..<end]))
                offset = end
                size = size * 7 % 9973 + 1
            }
        }
        let replies = try await onThreads(1) { _ in try (0..<3000).map { _ in try box.value.nextReply() } }[0]
        _ = try await writing

        var seqs: [Int64] = []
        for (index, (expect, reply)) in zip(expected, replies).enumerated() {
            switch expect {
            case .event(let id):
                #expect(reply.ok && reply.id == id && reply.seq != nil, "line \(index): \(reply)")
                if let seq = reply.seq { seqs.append(seq) }
            case .ping:
                #expect(reply.ok && reply.op == "ping", "line \(index): \(reply)")
            case .stats:
                #expect(reply.ok && reply.op == "stats", "line \(index): \(reply)")
            case .notSubscribed:
                #expect(!reply.ok && reply.reason == "not_subscribed", "line \(index): \(reply)")
            case .invalid:
                #expect(!reply.ok && reply.code == "invalid_json", "line \(index): \(reply)")
            }
        }
        #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 }, "seqs follow the line order")
        let stored = try broker.outbox().rows()
        #expect(stored.count == seqs.count && stored.map(\.seq) == seqs)
    }

    @Test("a ping written right behind a batch of events is answered after them, 100 times over")
    func commandBehindEvents() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let box = UncheckedBox(try broker.connect())
        let rounds = 100, perRound = 200
        async let writing: [Void] = onThreads(1) { _ in
            for round in 0..<rounds {
                var events: [UInt8] = []
                for index in 0..<perRound {
                    events += Array(EventLine.make(type: "behind", source: "pipelining", id: "r\(round)-\(index)").utf8) + [0x0A]
                }
                // Two writes a moment apart: the order must hold however the broker's
                // reads split them (IngestHandlerTests forces the hard orders).
                try box.value.write(events)
                usleep(500)
                try box.value.write(Array(#"{"op":"ping"}"#.utf8) + [0x0A])
            }
        }
        let replies = try await onThreads(1) { _ in try (0..<(rounds * (perRound + 1))).map { _ in try box.value.nextReply() } }[0]
        _ = try await writing
        var misplaced: [String] = []
        for (index, reply) in replies.enumerated() {
            let isPing = index % (perRound + 1) == perRound
            if isPing != (reply.op == "ping") || !reply.ok { misplaced.append("reply \(index): \(reply)") }
        }
        #expect(misplaced.isEmpty, "\(misplaced.count) replies out of place, first: \(misplaced.prefix(3))")
    }

    @Test("a client that writes 2,000 events and closes its side at once still gets every reply before the broker closes")
    func halfCloseGetsEveryReply() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let client = try broker.connect()
        var stream: [UInt8] = []
        for index in 0..<2000 {
            stream += Array(EventLine.make(type: "half.close", source: "pipelining", id: "h\(index)").utf8) + [0x0A]
            if index == 1000 { stream += Array(#"{"op":"ping"}"#.utf8) + [0x0A] }
        }
        let box = UncheckedBox(client)
        let bytes = stream
        async let writing: [Void] = onThreads(1) { _ in
            try box.value.write(bytes)
            box.value.finishWriting()
        }
        let replies = try await onThreads(1) { _ -> [WireReply] in
            var replies: [WireReply] = []
            while let line = try box.value.readLine() { replies.append(try WireReply(line)) }
            return replies
        }[0]
        _ = try await writing
        #expect(replies.count == 2001, "every line answered before the close")
        #expect(replies.filter { $0.ok && $0.seq != nil }.count == 2000)
        #expect(replies.count > 1001 && replies[1001].op == "ping", "the ping in its place")
        #expect(try broker.outbox().rows().count == 2000)
    }
}
