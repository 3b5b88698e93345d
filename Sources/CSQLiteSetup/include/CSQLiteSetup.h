#ifndef HOOKBUS_CSQLITESETUP_H
#define HOOKBUS_CSQLITESETUP_H

/// Process-wide SQLite settings that must come before SQLite initializes
/// (sqlite3_config is variadic, so Swift cannot call it itself).
/// Turns memory statistics off: with them on, every allocation SQLite makes
/// takes a global mutex. Returns SQLITE_OK, or SQLITE_MISUSE if SQLite was
/// already initialized (then nothing changed).
int hookbus_sqlite_disable_memstatus(void);

/// Registers the "hookbus" VFS as SQLite's default: the default VFS, with the
/// frames of each WAL transaction written together for the databases named
/// by hookbus_sqlite_gather_wal_of, and every other file untouched
/// (walvfs.c). Once per process; connections opened afterwards use it.
/// Returns SQLITE_OK, or an error if it could not be registered (then
/// nothing changed).
int hookbus_sqlite_register_wal_vfs(void);

/// The WAL of the database at `databasePath` (relative or absolute) is
/// gathered from now on; every other file goes through the VFS untouched.
/// Call before opening it. Returns SQLITE_OK, or an error if its directory
/// cannot be resolved (then it is not gathered).
int hookbus_sqlite_gather_wal_of(const char *databasePath);

/// 1 if the WAL of the database at `databasePath` is gathered, else 0.
int hookbus_sqlite_gathers_wal_of(const char *databasePath);

/// How many times a buffer of gathered WAL writes was written out, in this
/// process (for tests).
long long hookbus_sqlite_gathered_writes(void);

/// Sets SQLITE_DBCONFIG_DEFENSIVE on `connection` (a sqlite3 *) to `on`
/// (0 or 1; -1 leaves it), and stores what it was in `previous` if not NULL. Defensive
/// mode forbids writable_schema, which migration v5 uses; SQLite builds
/// differ in whether it starts on. Returns SQLite's result code.
int hookbus_sqlite_set_defensive(void *connection, int on, int *previous);

/// Asks the CPU to bring `address` into its cache (a hint; does nothing
/// else). The outbox keys' table touches one random slot per event.
static inline void hookbus_prefetch(const void *address) {
    __builtin_prefetch(address);
}

/// Waits on the POSIX semaphore `semaphore` (a `sem_t *`) until it is posted
/// or `nanoseconds` have passed on the monotonic clock (sem_clockwait, which
/// Swift cannot see). 0 if it was posted, -1 with errno ETIMEDOUT otherwise.
int hookbus_sem_wait_monotonic(void *semaphore, long long nanoseconds);

#endif
