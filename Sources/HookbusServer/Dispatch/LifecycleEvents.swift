import GRDB
import HookbusCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The broker's own events on the bus (`hookbus.started`, `hookbus.dead_lettered`),
/// published with source `hookbus` and the broker's own credentials.
struct LifecycleEvents: Sendable {
    let committer: Committer
    let logger: Logger
    private let decoder = RequestDecoder()

    init(committer: Committer, logger: Logger) {
        self.committer = committer
        self.logger = logger
    }

    func publish(type: String, data: (inout JSONWriter) -> Void) async {
        var out = JSONWriter()
        out.beginObject()
        out.key("type"); out.string(type)
        out.key("source"); out.string("hookbus")
        out.key("data")
        out.beginObject()
        data(&out)
        out.endObject()
        out.endObject()
        let producer = Producer(uid: getuid(), gid: getgid(), pid: getpid())
        guard case .publish(let event) = decoder.decode(line: out.bytes, producer: producer, nowMicros: Timestamp.nowMicros()) else {
            logger.error("cannot build a lifecycle event", metadata: ["hookbus.type": "\(type)"])
            return
        }
        if case .failure(let error) = await committer.commit([event]) {
            logger.error("cannot publish a lifecycle event", metadata: ["hookbus.type": "\(type)", "hookbus.error": "\(error.message)"])
        }
    }

    /// Publishes `hookbus.dead_lettered` for a delivery just dead-lettered,
    /// unless the dead event was itself a `hookbus.dead_lettered`: a subscriber
    /// that fails on those must not start a loop.
    func announceDeadLetter(_ notice: DeadLetterNotice, store: Store) async {
        var found: (id: Int64, eventID: String, eventType: String)?
        do {
            found = try await store.pool.read { db -> (id: Int64, eventID: String, eventType: String)? in
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT id, event_id, event_type FROM dead_letters WHERE subscriber = ? AND seq = ? ORDER BY id DESC LIMIT 1
                    """, arguments: [notice.subscriber, notice.seq]) else { return nil }
                return (row["id"], row["event_id"], row["event_type"])
            }
        } catch {
            logger.error("cannot read a dead letter", metadata: ["hookbus.error": "\(error)"])
        }
        guard found?.eventType != "hookbus.dead_lettered" else { return }
        await publish(type: "hookbus.dead_lettered") { out in
            if let found { out.key("dead_letter"); out.int(found.id) }
            out.key("subscriber"); out.string(notice.subscriber)
            out.key("seq"); out.int(notice.seq)
            if let found {
                out.key("event_id"); out.string(found.eventID)
                out.key("event_type"); out.string(found.eventType)
            }
            out.key("reason"); out.string(notice.reason.rawValue)
            out.key("attempts"); out.int(notice.attempts)
            out.key("error"); out.string(notice.error)
        }
    }
}
