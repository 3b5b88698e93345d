import Foundation
import GRDB

extension Store {
    /// Deletes events received before `before` (µs) that no subscriber still
    /// owes: an event is owed to a subscriber whose types match it and whose
    /// cursor is below it (configured subscribers, durable socket subscribers,
    /// and connected live ones, which take every type here), or while it has a
    /// retry waiting or a dead letter, for any subscriber. A subscriber removed
    /// from the config no longer holds events back by its cursor, but its
    /// retries and dead letters still do: put back, it gets its retries (a few
    /// rows, each keeping one event, not everything after it). Works in
    /// chunks, each delete its own short transaction, so ingest waits for at
    /// most one chunk.
    /// - Returns: the number of events deleted.
    @discardableResult
    public func prune(receivedBefore before: Int64, subscribers configured: [SubscriberInfo], chunk: Int = 1000) throws -> Int {
        let owners: [(name: String, cursor: Int64, types: [TypeFilter])] = try pool.read { db in
            let names = Dictionary(configured.map { ($0.name, $0.types) }, uniquingKeysWith: { first, _ in first })
            return try Row.fetchAll(db, sql: "SELECT subscriber, cursor, kind, types FROM subscriber_cursors").compactMap { row in
                let name: String = row["subscriber"]
                let cursor: Int64 = row["cursor"]
                if let types = names[name] { return (name, cursor, types) }
                if name.hasPrefix("~") { return (name, cursor, [.all]) }
                if (row["kind"] as String?) == "socket" { return (name, cursor, Self.decodeFilters(row["types"] ?? "[]")) }
                return nil
            }
        }
        var total = 0
        var after: Int64 = 0
        while true {
            let candidates = try pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT o.seq, o.type, o.received_at FROM outbox o WHERE o.seq > ? ORDER BY o.seq LIMIT ?
                    """, arguments: [after, chunk]).map { (seq: $0["seq"] as Int64, type: $0["type"] as String, received: $0["received_at"] as Int64) }
            }
            guard let last = candidates.last else { return total }
            after = last.seq
            // Receipt times follow seq; the first young event ends the pass.
            let old = candidates.prefix { $0.received < before }
            let free = old.filter { event in !owners.contains { $0.cursor < event.seq && $0.types.matches(event.type) } }.map(\.seq)
            if !free.isEmpty {
                let deleted = try pool.write { db -> [(seq: Int64, source: [UInt8], id: [UInt8])] in
                    let list = free.map(String.init).joined(separator: ",")
                    // The next seq comes after the last row: if this deletes it,
                    // outbox_seq keeps its seq from being handed out again.
                    try db.execute(sql: """
                        INSERT INTO outbox_seq (id, last) VALUES (1, (SELECT coalesce(max(seq), 0) FROM outbox))
                        ON CONFLICT (id) DO UPDATE SET last = excluded.last WHERE excluded.last > last
                        """)
                    let rows = try Row.fetchCursor(db, sql: """
                        DELETE FROM outbox WHERE seq IN (\(list))
                          AND NOT EXISTS (SELECT 1 FROM retries r WHERE r.seq = outbox.seq)
                          AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = outbox.seq)
                        RETURNING seq, source, id
                        """)
                    // The keys' bytes as stored (the outbox keys hash bytes, not Strings).
                    return try Array(rows.map { row in
                        (row[0], try row.withUnsafeData(atIndex: 1) { Array($0 ?? Data()) },
                         try row.withUnsafeData(atIndex: 2) { Array($0 ?? Data()) })
                    })
                }
                // Only once the delete has committed: a missing entry would let a duplicate in.
                keys.withLock { keys in
                    for (seq, source, id) in deleted {
                        let tag = source.withUnsafeBytes { source in id.withUnsafeBytes { id in keys.tag(source: source, id: id) } }
                        keys.remove(tag: tag, seq: seq)
                    }
                }
                total += deleted.count
            }
            if old.count < candidates.count { return total }
        }
    }
}
