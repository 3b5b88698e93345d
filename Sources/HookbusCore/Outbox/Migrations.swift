import GRDB

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
        return migrator
    }()

    /// Names of the migrations this build knows, in order.
    static var names: [String] { migrator.migrations }
}
