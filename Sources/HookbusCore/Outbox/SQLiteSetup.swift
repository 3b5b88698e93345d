import CSQLiteSetup

/// Process-wide SQLite settings, made once before SQLite first initializes.
public enum SQLiteSetup {
    /// Memory statistics off: with them on (SQLite's default), every
    /// allocation SQLite makes takes a global mutex, about a sixth of the
    /// CPU of an insert (measured: 3.3 → 2.85 µs a row in batches of 128).
    /// hookbus reads none of those statistics.
    ///
    /// True if the setting took; false if SQLite was already initialized in
    /// this process (it stays as it was: correct, a little slower).
    @discardableResult
    public static func apply() -> Bool { applied }

    private static let applied: Bool = hookbus_sqlite_disable_memstatus() == 0

    /// Gathers the WAL writes of the database at `path` (the broker's own)
    /// through the broker's VFS (`Sources/CSQLiteSetup/walvfs.c`): each WAL
    /// transaction's frames in one write instead of two writes a frame. The
    /// VFS becomes SQLite's default (after `apply()`, which must come before
    /// SQLite starts), but every other database goes through it untouched: a
    /// program that embeds hookbus keeps stock SQLite for its own, and so does
    /// the raw floor of `hookbus bench`. Call before opening the database.
    /// True if its WAL will be gathered.
    @discardableResult
    public static func gatherWALWrites(of path: String) -> Bool {
        apply()
        return registered && hookbus_sqlite_gather_wal_of(path) == 0
    }

    private static let registered: Bool = hookbus_sqlite_register_wal_vfs() == 0

    /// Buffers of gathered WAL writes written out so far in this process.
    static var gatheredWriteOuts: Int64 { hookbus_sqlite_gathered_writes() }

    /// Whether the WAL writes of the database at `path` are gathered.
    static func gathersWALWrites(of path: String) -> Bool {
        hookbus_sqlite_gathers_wal_of(path) != 0
    }
}
