import Foundation
import HookbusClient
import Testing

/// SIGTERM: stop accepting, answer what was read, commit, remove the socket, exit 0.
@Suite("Graceful shutdown")
struct ShutdownTests {
    /// What one producer saw until the broker closed its connection.
    struct ProducerLog: Sendable {
        var acked: [String: Int64] = [:]
        var refused = 0
        var problems: [String] = []

        /// Checks the reply to event `id`: ok (then never after a refusal) or shutting_down.
        mutating func record(_ line: String, id: String) {
            guard let reply = try? WireReply(line) else {
                problems.append("\(id): not a reply: \(line)")
                return
            }
            if reply.ok, let seq = reply.seq, reply.id == id, !reply.duplicate {
                if refused > 0 { problems.append("\(id) acknowledged after a shutting_down refusal") }
                acked[id] = seq
            } else if reply.code == "shutting_down" {
                refused += 1
            } else {
                problems.append("\(id): \(line)")
            }
        }
    }

    @Test("SIGTERM while producers are sending: every reply is ok or shutting_down, ok means stored, exit 0, socket removed")
    func sigtermWhileSending() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let socket = broker.socketPath

        // An idle connection: it must be closed, not keep the broker up.
        let idle = try broker.connect()
        #expect(try idle.call(#"{"op":"ping"}"#).ok)

        // Two producers until the broker closes their connections: one pipelining
        // with a window of 32, one writing a flood on one thread while another
        // thread reads the replies (so at the signal, many lines are read but not answered).
        let stop = SharedFlag()
        let replies = SharedCounter()
        async let logs = onThreads(2) { producer in
            producer == 0 ? try Self.window(to: socket, replies: replies, stop: stop)
                          : try Self.flood(to: socket, replies: replies, stop: stop)
        }
        // On a failure below, end the producers so that leaving the scope does not wait for them forever.
        defer { stop.set() }

        let deadline = ContinuousClock.now + .seconds(20)
        while replies.value < 1000 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        try #require(replies.value >= 1000, "the producers got no replies\n\(broker.log)")

        let status = try await broker.stop()
        #expect(status == 0, "\(broker.log)")
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is still there after SIGTERM")
        #expect(try idle.readLineUntilClosed() == nil, "the idle connection was not closed")

        let (windowed, flooded) = try await (logs[0], logs[1])
        #expect(windowed.problems.isEmpty, "\(windowed.problems.prefix(5))")
        #expect(flooded.problems.isEmpty, "\(flooded.problems.prefix(5))")

        // ok means stored with that seq; shutting_down or no reply means not stored.
        let outbox = try broker.outbox()
        for (source, log) in [("window", windowed), ("flood", flooded)] {
            let stored = Dictionary(uniqueKeysWithValues: try outbox.rows(source: source).map { ($0.id, $0.seq) })
            #expect(stored == log.acked, "\(source): stored events differ from the acknowledged ones (\(log.refused) refused)")
        }
        #expect(try outbox.integrityCheck() == "ok")
    }

    /// Publishes `w0`, `w1`, ... with `Publisher` until the broker closes the connection.
    static func window(to socket: String, replies: SharedCounter, stop: SharedFlag) throws -> ProducerLog {
        let client = try SocketClient.connect(socket, timeout: .seconds(20))
        var log = ProducerLog()
        var next = 0
        let lines = (0...).lazy.prefix { _ in !stop.isSet }.map { EventLine.make(source: "window", id: "w\($0)") }
        do {
            try Publisher(client: client, window: 32).publish(lines) { _, line in
                log.record(line, id: "w\(next)")
                next += 1
                replies.increment()
            }
        } catch let error as SocketClient.Failure where SocketClient.isDisconnect(error) {
            // The broker stopped reading and closed the connection. A failed write
            // ends `publish` early: the replies already sent back are still to be read.
            while let line = try client.readLineUntilClosed() {
                log.record(line, id: "w\(next)")
                next += 1
            }
        }
        return log
    }

    /// Writes `f0`, `f1`, ... (up to 50,000) from one thread and reads the replies on this one.
    static func flood(to socket: String, replies: SharedCounter, stop: SharedFlag) throws -> ProducerLog {
        let client = UncheckedBox(try SocketClient.connect(socket, timeout: .seconds(20)))
        let writer = Thread {
            var index = 0
            while index < 50_000 && !stop.isSet {
                let chunk = (index..<index + 100).map { EventLine.make(source: "flood", id: "f\($0)") + "\n" }.joined()
                do { try client.value.write(Array(chunk.utf8)) } catch { return }
                index += 100
            }
            client.value.finishWriting()
        }
        writer.start()
        var log = ProducerLog()
        var next = 0
        while let line = try client.value.readLineUntilClosed() {
            log.record(line, id: "f\(next)")
            next += 1
            replies.increment()
        }
        return log
    }
}
