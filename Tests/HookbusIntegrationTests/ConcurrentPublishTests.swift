import HookbusClient
import Testing

extension HeavyTests {
    /// Many producers at once, each pipelining: every event is acknowledged,
    /// seqs never repeat, and what was acknowledged is what is in the outbox.
    @Suite("Concurrent producers")
    struct ConcurrentPublishTests {
        static let connections = 50
        static let eventsPerConnection = 200
        static let window = 32

        /// What one producer saw: its seqs in reply order, and any reply that was not a plain `ok`.
        struct ProducerLog: Sendable {
            var acked: [(id: String, seq: Int64)] = []
            var problems: [String] = []
        }

        @Test("50 connections × 200 pipelined events: all acknowledged, unique increasing seqs, all stored")
        func fiftyProducers() async throws {
            let scratch = try ScratchDirectory()
            defer { scratch.cleanUp() }
            let broker = try await scratch.startBroker()
            let socket = broker.socketPath

            let logs = try await onThreads(Self.connections) { producer in
                let client = try SocketClient.connect(socket, timeout: .seconds(30))
                let lines = (0..<Self.eventsPerConnection).map {
                    EventLine.make(type: "load.test", source: "producer-\(producer)", id: "e\($0)",
                                   data: #"{"producer":\#(producer),"n":\#($0)}"#)
                }
                var log = ProducerLog()
                var sent = 0
                try Publisher(client: client, window: Self.window).publish(lines) { _, line in
                    let expectedID = "e\(sent)"
                    sent += 1
                    let reply = try WireReply(line)
                    guard reply.ok, !reply.duplicate, let seq = reply.seq, reply.id == expectedID else {
                        log.problems.append("producer \(producer), event \(expectedID): \(line)")
                        return
                    }
                    log.acked.append((expectedID, seq))
                }
                return log
            }

            let problems = logs.flatMap(\.problems)
            #expect(problems.isEmpty, "\(problems.prefix(10))\n\(broker.log)")
            var acked: [String: Int64] = [:]  // "source/id" -> seq
            for (producer, log) in logs.enumerated() {
                #expect(log.acked.count == Self.eventsPerConnection, "producer \(producer)")
                let seqs = log.acked.map(\.seq)
                #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 },
                        "producer \(producer)'s seqs are not increasing: \(seqs.prefix(20))")
                for (id, seq) in log.acked { acked["producer-\(producer)/\(id)"] = seq }
            }
            let total = Self.connections * Self.eventsPerConnection
            #expect(acked.count == total)
            #expect(Set(acked.values).count == total, "some seq was given to two events")

            let rows = try broker.outbox().rows()
            #expect(rows.count == total)
            #expect(Set(rows.map(\.seq)) == Set(acked.values), "the outbox's seqs differ from the acknowledged ones")
            let stored = Dictionary(uniqueKeysWithValues: rows.map { ("\($0.source)/\($0.id)", $0.seq) })
            #expect(stored == acked, "some event is stored under another seq than it was acknowledged with")
        }
    }
}
