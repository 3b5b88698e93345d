import GRDB

/// One outbox row, as the tests look at it.
struct OutboxRow: Sendable, Equatable {
    var seq: Int64
    var id: String
    var source: String
    var type: String
    var producerUID: Int64
    var producerGID: Int64
    var producerPID: Int64
    var event: String
}

/// Reads a broker's database from the side, read-only: SQLite lets readers in
/// beside the broker's writer (WAL), and the broker's own lock files are not
/// touched, so the broker may be running or stopped.
///
/// `count()` and `rows()` see the events producers published: the broker's own
/// lifecycle events (source `hookbus`: `hookbus.started` at each start, ...) are
/// left out, since when they land relative to a test's events is the broker's business.
final class OutboxReader {
    private let queue: DatabaseQueue
    /// The source of the broker's own events.
    static let brokerSource = "hookbus"

    init(path: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        queue = try DatabaseQueue(path: path, configuration: configuration)
    }

    func count() throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox WHERE source != ?", arguments: [Self.brokerSource]) ?? 0 }
    }

    func rows() throws -> [OutboxRow] {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT seq, id, source, type, producer_uid, producer_gid, producer_pid, event
                FROM outbox WHERE source != ? ORDER BY seq
                """, arguments: [Self.brokerSource]).map { row in
                OutboxRow(seq: row["seq"], id: row["id"], source: row["source"], type: row["type"],
                          producerUID: row["producer_uid"], producerGID: row["producer_gid"],
                          producerPID: row["producer_pid"], event: row["event"])
            }
        }
    }

    /// The row stored for `(source, id)`, if any.
    func row(source: String, id: String) throws -> OutboxRow? {
        try rows(source: source).first { $0.id == id }
    }

    /// Rows of one source, keyed by id.
    func rows(source: String) throws -> [OutboxRow] {
        try rows().filter { $0.source == source }
    }

    /// The highest seq in the outbox, the broker's own events included (0 if empty).
    func maxSeq() throws -> Int64 {
        try queue.read { db in try Int64.fetchOne(db, sql: "SELECT max(seq) FROM outbox") ?? 0 }
    }

    /// `PRAGMA integrity_check`: "ok" for a sound database.
    func integrityCheck() throws -> String {
        try queue.read { db in
            try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ")
        }
    }
}
