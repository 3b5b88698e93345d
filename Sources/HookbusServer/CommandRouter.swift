import GRDB
import HookbusCore
import Logging

/// Answers command lines (lines with an `op`). Each command writes exactly one
/// reply line.
public struct CommandRouter: Sendable {
    /// The protocol version this broker speaks, reported by `ping`.
    static let protocolVersion = 1
    static let implemented = ["ping", "stats", "subscribe", "ack", "nack", "replay", "dlq.list", "dlq.show", "dlq.retry", "dlq.purge"]

    let store: Store
    let dispatcher: Dispatcher
    let signal: SeqSignal

    init(store: Store, dispatcher: Dispatcher, signal: SeqSignal) {
        self.store = store
        self.dispatcher = dispatcher
        self.signal = signal
    }

    func handle(_ command: Command, producer: Producer, into out: inout JSONWriter) async {
        switch command.op {
        case "ping":
            Reply.ok(op: "ping", into: &out) { out in
                out.key("protocol"); out.int(Self.protocolVersion)
            }
        case "stats":
            await stats(into: &out)
        case "replay":
            replay(command, into: &out)
        case "dlq.list", "dlq.show", "dlq.retry", "dlq.purge":
            deadLetters(command, into: &out)
        default:
            Reply.error(WireError(.unknownOp, "unknown_op", attribute: "op",
                                  "unknown op \"\(EventValidator.clipped(command.op))\"; this broker implements: "
                                  + Self.implemented.joined(separator: ", ")),
                        into: &out)
        }
    }

    private func stats(into out: inout JSONWriter) async {
        let outbox: (events: Int, bytes: Int64)
        do {
            outbox = try await store.pool.read { db in
                let events = try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0
                let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
                let size = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0
                return (events, pages * size)
            }
        } catch {
            Reply.error(WireError(.unavailable, "storage_failed", "cannot read the outbox: \(error)"), into: &out)
            return
        }
        let last = signal.last
        let runners = dispatcher.runners + dispatcher.connectedSocketRunners
        Reply.ok(op: "stats", into: &out) { out in
            out.key("outbox")
            out.beginObject()
            out.key("events"); out.int(outbox.events)
            out.key("last_seq"); out.int(last)
            out.key("database_bytes"); out.int(outbox.bytes)
            out.endObject()
            out.key("in_flight"); out.int(dispatcher.inFlight)
            out.key("max_inflight"); out.int(dispatcher.maxInflight)
            out.key("subscribers")
            out.beginArray()
            for runner in runners {
                let stats = runner.stats
                let snapshot = stats.snapshot
                out.beginObject()
                out.key("name"); out.string(stats.name)
                out.key("kind"); out.string(stats.kind)
                out.key("types")
                out.beginArray()
                for filter in stats.types { out.string(filter.description) }
                out.endArray()
                out.key("delivered"); out.int(snapshot.delivered)
                out.key("failed_attempts"); out.int(snapshot.failedAttempts)
                out.key("retrying"); out.int(snapshot.retrying)
                out.key("dead"); out.int(snapshot.dead)
                out.key("in_flight"); out.int(snapshot.inFlight)
                out.key("cursor"); out.int(snapshot.cursor)
                out.key("lag"); out.int(max(0, last - snapshot.cursor))
                out.key("last_error")
                if let error = snapshot.lastError { out.string(error) } else { out.null() }
                out.key("last_error_at")
                if let at = snapshot.lastErrorAt { out.string(Timestamp.format(micros: at)) } else { out.null() }
                out.key("delivery_us")
                out.beginObject()
                for (label, fraction) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
                    out.key(label)
                    if let value = snapshot.percentile(fraction) { out.int(value) } else { out.null() }
                }
                out.endObject()
                out.endObject()
            }
            out.endArray()
        }
    }
}
