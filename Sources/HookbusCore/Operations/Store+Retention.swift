import GRDB

extension Store {
    /// Deletes events received before `before` (µs) that every subscriber is
    /// done with: at or below the cursor of every configured subscriber (named
    /// in `configured`) and of every socket subscriber, with no retry waiting
    /// and no dead letter. A subscriber removed from the config no longer holds
    /// events back. Works in chunks, each its own short transaction, so ingest
    /// waits for at most one chunk.
    /// - Returns: the number of events deleted.
    @discardableResult
    public func prune(receivedBefore before: Int64, configured: [String], chunk: Int = 1000) throws -> Int {
        let placeholders = configured.isEmpty ? "NULL" : Array(repeating: "?", count: configured.count).joined(separator: ",")
        var total = 0
        while true {
            let deleted = try pool.write { db -> Int in
                let floor = try Int64.fetchOne(db, sql: """
                    SELECT min(cursor) FROM subscriber_cursors
                    WHERE subscriber IN (\(placeholders)) OR kind = 'socket' OR subscriber LIKE '~%'
                    """, arguments: StatementArguments(configured)) ?? Int64.max
                try db.execute(sql: """
                    DELETE FROM outbox WHERE seq IN (
                        SELECT o.seq FROM outbox o
                        WHERE o.received_at < ? AND o.seq <= ?
                          AND NOT EXISTS (SELECT 1 FROM retries r WHERE r.seq = o.seq)
                          AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = o.seq)
                        ORDER BY o.seq LIMIT ?)
                    """, arguments: [before, floor, chunk])
                return db.changesCount
            }
            total += deleted
            if deleted < chunk { return total }
        }
    }
}
