import Foundation
import HookbusClient
import HookbusTestSupport
import Testing

extension HeavyTests {
    /// Clients that misbehave at the connection level (issue 6, "Hostile
    /// input"): half a line and gone, a thousand connections opened and dropped.
    /// The broker stays up, stores nothing half-sent and gives every descriptor back.
    @Suite("Reliability: dropped connections")
    struct ReliabilityConnectionTests {
        static let connections = 1_000
        /// Descriptors the broker may open meanwhile and keep: SQLite's reader
        /// connections, opened on demand (up to 4, each with the database and
        /// its WAL), and a little room. Sockets must come back exactly.
        static let slack = 10

        /// The broker's descriptors once it settled after start: all, and sockets.
        static func baseline(_ broker: BrokerProcess) throws -> (total: Int, sockets: Int, targets: [String]) {
            let total = try #require(ReliabilityDescriptors.count(broker.pid), "cannot read /proc/\(broker.pid)/fd")
            let sockets = try #require(ReliabilityDescriptors.sockets(broker.pid))
            return (total, sockets, ReliabilityDescriptors.targets(broker.pid))
        }

        /// Waits until the broker holds no more sockets than at `base` (with one
        /// client of the test's open then and now) and at most `slack` more descriptors.
        static func waitForDescriptors(_ broker: BrokerProcess, backTo base: (total: Int, sockets: Int, targets: [String])) async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while (ReliabilityDescriptors.sockets(broker.pid) ?? Int.max) > base.sockets
                || (ReliabilityDescriptors.count(broker.pid) ?? Int.max) > base.total + slack {
                if ContinuousClock.now >= deadline {
                    throw HarnessError("hookbusd still holds \(ReliabilityDescriptors.targets(broker.pid)) 30 s later; "
                        + "at the start: \(base.targets)\n\(broker.log)")
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        @Test("half a line, then the client is gone: the broker serves on and stores nothing of it")
        func halfLineThenGone() async throws {
            let scratch = try ScratchDirectory()
            defer { scratch.cleanUp() }
            let broker = try await scratch.startBroker()
            let probe = try broker.connect()
            _ = try probe.call(#"{"op":"ping"}"#)
            let base = try Self.baseline(broker)

            let event = Array(EventLine.make(type: "half.x", source: "half", id: "h1", data: #"{"k":"caf\#u{E9}","n":[1,2,3]}"#).utf8)
            let accent = event.firstIndex(of: 0xC3)!
            let halves: [(String, [UInt8], Bool)] = [
                ("half an event", Array(event[..<(event.count / 2)]), false),
                ("half an event, then shutdown(SHUT_WR)", Array(event[..<(event.count / 2)]), true),
                ("an event cut inside a UTF-8 character", Array(event[...accent]), false),
                ("the event without its last byte", Array(event.dropLast()), true),
                ("100 KB of an unfinished line", Array(#"{"type":"half.x","source":"half","id":"h2","data":""#.utf8) + [UInt8](repeating: 0x61, count: 100_000), false),
            ]
            for (what, bytes, halfClose) in halves {
                let connection = try ReliabilityRawConnection(path: broker.socketPath)
                connection.write(bytes)
                if halfClose { shutdown(connection.fd, Int32(SHUT_WR)) }
                connection.close()
                // Another client is served meanwhile.
                #expect(try broker.connect().call(#"{"op":"ping"}"#).ok, "after \(what)")
            }

            // One client's half line is not another's beginning.
            do {
                let first = try ReliabilityRawConnection(path: broker.socketPath)
                first.write(Array(#"{"type":"half.x","source":"half","id":"h3","#.utf8))
                let second = try broker.connect()
                let reply = try second.call(#""data":1}"#)
                #expect(reply.code == "invalid_json", "\(reply)")
                first.close()
            }

            // Once every dropped connection is gone from the broker, nothing of them is stored.
            try await Self.waitForDescriptors(broker, backTo: base)
            #expect(broker.isRunning)
            #expect(try broker.outbox().rows(source: "half").isEmpty, "a half line was stored")
            let stored = try probe.call(EventLine.make(type: "half.x", source: "whole", id: "w1"))
            #expect(stored.ok && stored.seq != nil, "\(stored)")
        }

        @Test("1,000 connections opened and dropped (idle, half lines, unread replies, half-closed): the broker answers and its descriptors return to the baseline")
        func thousandDroppedConnections() async throws {
            let scratch = try ScratchDirectory()
            defer { scratch.cleanUp() }
            let broker = try await scratch.startBroker()
            let client = try broker.connect()
            _ = try client.call(#"{"op":"ping"}"#)
            let base = try Self.baseline(broker)
            let socket = broker.socketPath
            let threads = 4
            let batch = 25  // open at once by each thread, then all dropped

            let tried = try await onThreads(threads) { thread -> Int in
                var random = SplitMix64(seed: 0xD80_0000 + UInt64(thread))
                var count = 0
                while count < Self.connections / threads {
                    var open: [ReliabilityRawConnection] = []
                    for _ in 0..<batch {
                        let connection = try ReliabilityRawConnection(path: socket)
                        switch Int.random(in: 0..<5, using: &random) {
                        case 0: break  // connect, say nothing
                        case 1: connection.write(Array(#"{"type":"drop.x","source":"drop","id":"#.utf8))
                        case 2: connection.write(Array("{\"op\":\"ping\"}\n{\"op\":\"stats\"}\n{\"op\":".utf8))  // replies never read
                        case 3:
                            connection.write(Array(#"{"type":"drop.x","da"#.utf8))
                            shutdown(connection.fd, Int32(SHUT_WR))
                        default: connection.write([UInt8](repeating: 0x5B, count: Int.random(in: 1...4096, using: &random)))
                        }
                        open.append(connection)
                        count += 1
                    }
                    for connection in open { connection.close() }
                }
                return count
            }
            let total = tried.reduce(0, +)
            #expect(total == Self.connections)

            #expect(broker.isRunning)
            #expect(try client.call(#"{"op":"ping"}"#).ok)
            try await Self.waitForDescriptors(broker, backTo: base)
            #expect(try broker.outbox().rows(source: "drop").isEmpty, "nothing of the half lines is stored")
            #expect(try client.call(EventLine.make(source: "after", id: "a1")).ok)
            ReliabilityFigures.record("dropped connections: \(total) opened and dropped; descriptors back to \(ReliabilityDescriptors.count(broker.pid) ?? -1) (at the start \(base.total)), sockets to \(ReliabilityDescriptors.sockets(broker.pid) ?? -1) (at the start \(base.sockets))")
        }
    }
}
