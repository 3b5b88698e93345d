#ifndef HOOKBUS_CPOWERLOSSVFS_H
#define HOOKBUS_CPOWERLOSSVFS_H

/// A test VFS that knows what a power loss would leave on the disk (powerloss.c).
///
/// It wraps the VFS that is SQLite's default when it is registered and becomes
/// the default itself: register it before the broker's VFS, so that it sits
/// under it and sees writes as they reach the kernel. For every database and
/// WAL file under `directory` it keeps, in memory, the file as the disk holds
/// it for sure (every write followed by a sync of that file) and the writes
/// since, which a power loss may keep or lose, whole or by 512-byte sectors,
/// in any combination.
///
/// Returns SQLITE_OK, or an error if the VFS could not be registered.
int powerloss_register(const char *directory);

/// Writes into `outDirectory` (which must exist) what the disk could hold if
/// the power went off now: for each tracked file, its synced content with a
/// random choice of the writes since (seeded by `seed`), under the file's base
/// name. The shared-memory index is left out, as a reboot loses it. Tracked
/// writes wait while the images are made. Sets `*pendingSeen` (if not NULL)
/// to the number of unsynced operations the images chose from. Returns the
/// number of files written, or -1 on an error.
int powerloss_snapshot(const char *outDirectory, unsigned int seed, long long *pendingSeen);

/// Syncs seen so far on tracked files, and writes seen since the last sync of
/// their file (for the test's own checks).
long long powerloss_syncs(void);
long long powerloss_pending_writes(void);

#endif
