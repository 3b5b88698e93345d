import Foundation
import HookbusClient
import Testing

/// The limits of the config (DESIGN.md "Security", issue 6 "Limits"): excess
/// connections get a clear refusal line and are closed, never left hanging;
/// an outbox at `max_outbox_bytes` refuses publishes with `unavailable` and
/// says why, and the broker keeps serving.
@Suite("Reliability: limits")
struct ReliabilityLimitTests {
    static let maxConnections = 5

    /// A connection that has answered ping, so the broker counts it; retried
    /// while connections closed a moment ago are still being counted.
    static func servedConnection(_ broker: BrokerProcess) async throws -> SocketClient {
        let deadline = ContinuousClock.now + BrokerProcess.deadline
        while true {
            let client = try broker.connect()
            let reply = try client.call(#"{"op":"ping"}"#)
            if reply.ok { return client }
            guard reply.reason == "too_many_connections", ContinuousClock.now < deadline else {
                throw HarnessError("ping answered \(reply.line)\n\(broker.log)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test("max_connections = 5: connections 6 to 15 each get one unavailable/too_many_connections line and are closed; the five keep working")
    func excessConnectionsAreRefused() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let config = try scratch.write("hookbus.toml", "max_connections = \(Self.maxConnections)\n")
        let broker = try await scratch.startBroker(config: config)

        var held: [SocketClient] = []
        for _ in 0..<Self.maxConnections { held.append(try await Self.servedConnection(broker)) }

        for extra in 0..<10 {
            // The read timeout turns a hang into a failure.
            let client = try broker.connect(timeout: .seconds(20))
            let line = try #require(try client.readLineUntilClosed(), "connection \(Self.maxConnections + 1 + extra) was closed without a word")
            let reply = try WireReply(line)
            #expect(!reply.ok && reply.code == "unavailable" && reply.reason == "too_many_connections", "\(line)")
            #expect(reply.message?.contains("max_connections") == true && reply.message?.contains("\(Self.maxConnections)") == true,
                    "the refusal names the limit: \(line)")
            // Then the broker closes it, whether or not the client says anything.
            try? client.send(line: #"{"op":"ping"}"#)
            #expect(try client.readLineUntilClosed() == nil, "connection \(Self.maxConnections + 1 + extra) was left open")
        }

        // `hookbus ping` at a full broker says why on stderr and exits 1: a
        // health check must not read it as a healthy broker.
        let ping = try await broker.hookbus(["ping"])
        #expect(!ping.signaled && ping.status == 1 && ping.stdout.isEmpty && ping.stderr.contains("unavailable (too_many_connections)"), "\(ping)")

        // The five served connections were not disturbed.
        for (index, client) in held.enumerated() {
            let reply = try client.call(EventLine.make(source: "limits", id: "held-\(index)"))
            #expect(reply.ok, "\(reply)")
        }
        // A place freed is a place taken.
        held.removeLast()
        let next = try await Self.servedConnection(broker)
        #expect(try next.call(#"{"op":"stats"}"#).ok)
        #expect(try broker.outbox().rows(source: "limits").count == Self.maxConnections)
    }

    @Test("max_outbox_bytes: publishes past it get unavailable/outbox_full saying why; ping, stats and dlq.list go on; nothing acknowledged is lost")
    func outboxLimit() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let limit = 256 * 1024
        let config = try scratch.write("hookbus.toml", "durability = \"normal\"\nmax_outbox_bytes = \(limit)\n")
        let broker = try await scratch.startBroker(config: config)
        let client = try broker.connect()
        let pad = String(repeating: "x", count: 2000)

        var acked: [String: Int64] = [:]
        var refusal: WireReply?
        for n in 0..<2_000 {
            let reply = try client.call(EventLine.make(source: "outbox", id: "o\(n)", data: #"{"pad":"\#(pad)"}"#))
            if reply.ok, let seq = reply.seq {
                acked["o\(n)"] = seq
            } else {
                refusal = reply
                break
            }
        }
        let refused = try #require(refusal, "2,000 events of 2 KB fit under max_outbox_bytes = \(limit)")
        #expect(refused.code == "unavailable" && refused.reason == "outbox_full", "\(refused)")
        let message = refused.message ?? ""
        #expect(message.contains("max_outbox_bytes") && message.contains("\(limit)"), "the message says why: \(message)")
        #expect(acked.count > 50, "only \(acked.count) events before the limit")

        // Still refused, on this connection and on a new one; everything else is served.
        #expect(try client.call(EventLine.make(source: "outbox", id: "after")).reason == "outbox_full")
        let other = try broker.connect()
        #expect(try other.call(#"{"op":"ping"}"#).ok)
        #expect(try other.call(#"{"op":"stats"}"#).ok)
        #expect(try other.call(EventLine.make(source: "outbox", id: "after-2")).reason == "outbox_full")
        #expect(try other.call(#"{"op":"dlq.list"}"#).ok)
        #expect(broker.isRunning)

        let stored = Dictionary(uniqueKeysWithValues: try broker.outbox().rows(source: "outbox").map { ($0.id, $0.seq) })
        #expect(stored == acked, "exactly the acknowledged events are stored, with their seqs")
    }
}
