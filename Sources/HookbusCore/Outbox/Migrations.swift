import CSQLiteSetup
import GRDB
import GRDBSQLite

/// The schema, as named, forward-only migrations recorded in the database
/// (`grdb_migrations`). Never edit a migration that has shipped: add one.
/// protocol/STORAGE.md describes every table.
enum Migrations {
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-outbox") { db in
            try db.execute(sql: """
                CREATE TABLE outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
                    id TEXT NOT NULL,
                    source TEXT NOT NULL,
                    type TEXT NOT NULL,
                    subject TEXT,
                    time TEXT NOT NULL,                     -- the event's time (RFC 3339)
                    received_at INTEGER NOT NULL,           -- microseconds since the Unix epoch
                    producer_uid INTEGER NOT NULL,
                    producer_gid INTEGER NOT NULL,
                    producer_pid INTEGER NOT NULL,
                    event TEXT NOT NULL,                    -- the event JSON as delivered
                    UNIQUE (source, id)
                );
                """)
        }
        migrator.registerMigration("v2-delivery") { db in
            try db.execute(sql: """
                CREATE TABLE subscriber_cursors (
                    subscriber TEXT PRIMARY KEY,
                    cursor INTEGER NOT NULL,                -- every matching seq <= cursor is settled
                    updated_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE retries (
                    subscriber TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    attempt INTEGER NOT NULL,               -- attempts made so far
                    next_attempt_at INTEGER NOT NULL,       -- microseconds since the epoch
                    last_error TEXT,
                    errors TEXT NOT NULL DEFAULT '[]',      -- JSON: every attempt's error
                    first_failed_at INTEGER,
                    replay INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (subscriber, seq)
                ) WITHOUT ROWID;
                CREATE TABLE dead_letters (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    subscriber TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    event_id TEXT NOT NULL,
                    event_type TEXT NOT NULL,
                    event TEXT NOT NULL,                    -- a copy: dead letters never pin the outbox
                    attempts INTEGER NOT NULL,
                    errors TEXT NOT NULL,                   -- JSON: every attempt's error
                    last_error TEXT NOT NULL,
                    reason TEXT NOT NULL CHECK (reason IN ('max_attempts', 'rejected')),
                    first_failed_at INTEGER NOT NULL,
                    last_failed_at INTEGER NOT NULL,
                    replay INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX dead_letters_by_subscriber ON dead_letters (subscriber, seq);
                CREATE TABLE hook_state (
                    hook TEXT NOT NULL,
                    key TEXT NOT NULL,
                    value TEXT NOT NULL,
                    PRIMARY KEY (hook, key)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v3-subscriber-kinds") { db in
            // Socket subscribers are not in the config: keep what they asked for,
            // so replay and retention know them while they are away.
            try db.execute(sql: """
                ALTER TABLE subscriber_cursors ADD COLUMN kind TEXT;
                ALTER TABLE subscriber_cursors ADD COLUMN types TEXT;   -- JSON array of type filters
                CREATE INDEX retries_by_seq ON retries (seq);
                CREATE INDEX dead_letters_by_seq ON dead_letters (seq);
                """)
        }
        migrator.registerMigration("v4-outbox-keys-in-memory") { db in
            // UNIQUE (source, id) leaves: the broker checks (source, id) in
            // memory (OutboxKeys). SQLite cannot drop the constraint's index,
            // so the table is rebuilt, its rows and sqlite_sequence kept.
            let sequence = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            try db.execute(sql: """
                CREATE TABLE outbox_v4 (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
                    id TEXT NOT NULL,
                    source TEXT NOT NULL,
                    type TEXT NOT NULL,
                    subject TEXT,
                    time TEXT NOT NULL,                     -- the event's time (RFC 3339)
                    received_at INTEGER NOT NULL,           -- microseconds since the Unix epoch
                    producer_uid INTEGER NOT NULL,
                    producer_gid INTEGER NOT NULL,
                    producer_pid INTEGER NOT NULL,
                    event TEXT NOT NULL                     -- the event JSON as delivered
                );
                INSERT INTO outbox_v4 (seq, id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event)
                    SELECT seq, id, source, type, subject, time, received_at, producer_uid, producer_gid, producer_pid, event
                    FROM outbox ORDER BY seq;
                DROP TABLE outbox;
                ALTER TABLE outbox_v4 RENAME TO outbox;
                DELETE FROM sqlite_sequence WHERE name = 'outbox';
                """)
            if let sequence {
                try db.execute(sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", arguments: [sequence])
            }
        }
        migrator.registerMigration("v5-outbox-seq-without-autoincrement") { db in
            // AUTOINCREMENT made SQLite rewrite sqlite_sequence with every
            // insert: a page more in every commit's fsync. The broker hands out
            // seqs itself (from the last row at start); outbox_seq keeps the
            // highest seq handed out for when retention prunes the last rows.
            // The outbox's row in sqlite_sequence is left as it is (nothing
            // writes it any more). From this version on, a hookbusd refuses a
            // database migrated by a newer one (Store.migrate).
            let last = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") ?? 0
            try db.execute(sql: """
                CREATE TABLE outbox_seq (
                    id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row
                    last INTEGER NOT NULL                   -- no seq up to this one is handed out again
                );
                """)
            try db.execute(sql: "INSERT INTO outbox_seq (id, last) VALUES (1, ?)", arguments: [last])
            // Without AUTOINCREMENT the table stores the same (seq is still the
            // rowid), so its CREATE text is edited in place, as SQLite documents
            // for changes that leave the stored content as it is
            // (https://sqlite.org/lang_altertable.html, section 7), not rebuilt.
            let version = try Int.fetchOne(db, sql: "PRAGMA schema_version") ?? 0
            // Some SQLite builds start in defensive mode, which ignores writable_schema.
            guard let connection = db.sqliteConnection else { throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "database closed") }
            var defensive: Int32 = 0
            let code = hookbus_sqlite_set_defensive(UnsafeMutableRawPointer(connection), 0, &defensive)
            guard code == SQLITE_OK else { throw DatabaseError(resultCode: ResultCode(rawValue: code), message: "cannot leave SQLite's defensive mode") }
            defer { _ = hookbus_sqlite_set_defensive(UnsafeMutableRawPointer(connection), defensive, nil) }
            try db.execute(sql: "PRAGMA writable_schema = ON")
            do {
                try db.execute(sql: """
                    UPDATE sqlite_master SET sql = replace(sql, 'seq INTEGER PRIMARY KEY AUTOINCREMENT', 'seq INTEGER PRIMARY KEY')
                    WHERE type = 'table' AND name = 'outbox'
                    """)
                let changed = db.changesCount
                let text = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'") ?? ""
                guard changed == 1, !text.uppercased().contains("AUTOINCREMENT") else {
                    throw DatabaseError(message: "the outbox table's definition is not the one migration v4 created: \(text)")
                }
                try db.execute(sql: "PRAGMA schema_version = \(version + 1)")
            } catch {
                try? db.execute(sql: "PRAGMA writable_schema = OFF")
                throw error
            }
            try db.execute(sql: "PRAGMA writable_schema = OFF")
            db.clearSchemaCache()
        }
        return migrator
    }()

    /// Names of the migrations this build knows, in order.
    static var names: [String] { migrator.migrations }

    /// The migrations this build would apply to a database that has `applied`, in order.
    static func pending(after applied: Set<String>) -> [String] {
        names.filter { !applied.contains($0) }
    }
}

extension Store {
    /// The migrations this hookbus would apply to the database at `path`, read
    /// without changing the file (a dry run must not upgrade it).
    public static func pendingMigrations(at path: String) throws -> [String] {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        let applied = try queue.read { db in try Migrations.migrator.appliedIdentifiers(db) }
        return Migrations.pending(after: applied)
    }
}
