// A VFS for tests that keeps, for the database and WAL files under one
// directory, what a power loss would leave of them (CPowerLossVFS.h).
//
// The model: a write reaches the disk for sure only once its file is synced
// (fsync/fdatasync, SQLite's xSync), by any handle of that file. Until then a
// power loss may keep it or lose it, or keep some of its 512-byte sectors and
// not others, independently of the other unsynced writes. Overwrites are
// power-safe (a write changes nothing outside its range), as SQLite assumes of
// the broker's files. A new file's name is taken as durable at once (SQLite
// syncs the directory of a new WAL; the database file exists before any test
// writes to it).
//
// It sits under the broker's VFS (register it before the broker's), so it
// sees writes as they reach the kernel, after the broker's VFS gathered them.
//
// One mutex orders every tracked write, truncate and the bookkeeping of a
// sync with the snapshots, so a snapshot is a consistent cut of the
// operations around it. A sync releases it while the real fsync runs: a
// snapshot taken meanwhile sees that sync's writes as not yet durable (the
// commit they belong to is not acknowledged yet), as a power loss at that
// moment would find them. Out of memory aborts: the model must never drift
// from the files.
#include "CPowerLossVFS.h"
#include <sqlite3.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct Pending {
    sqlite3_int64 offset;   // a write's offset, or the size of a truncate
    int amount;             // -1 for a truncate
    unsigned char *data;
    unsigned long long sequence;  // the order of the operations on this file
} Pending;

typedef struct Tracked {
    char *path;
    unsigned char *durable;
    sqlite3_int64 size;      // of the durable image
    sqlite3_int64 capacity;
    Pending *pending;
    int pendingCount;
    int pendingCapacity;
    unsigned long long nextSequence;
    int deleted;
    struct Tracked *next;
} Tracked;

typedef struct PowerLossFile {
    sqlite3_file base;
    sqlite3_file *real;       // the wrapped VFS's file, right after this struct
    Tracked *tracked;         // NULL for a file that is passed through untouched
} PowerLossFile;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Tracked *trackedFiles;
static char trackedDirectory[PATH_MAX];
static size_t trackedDirectoryLength;
static sqlite3_vfs *inner;
static sqlite3_vfs powerLossVFS;
static sqlite3_io_methods powerLossMethods;
static long long syncs;

static void *checked(void *pointer) {
    if (pointer == NULL) {
        fprintf(stderr, "powerloss: out of memory\n");
        abort();
    }
    return pointer;
}

static void reserve(Tracked *file, sqlite3_int64 size) {
    if (size <= file->capacity) return;
    sqlite3_int64 capacity = file->capacity > 0 ? file->capacity : 1 << 16;
    while (capacity < size) capacity *= 2;
    file->durable = checked(realloc(file->durable, (size_t)capacity));
    file->capacity = capacity;
}

enum { SECTOR = 512 };

/// Applies one operation to an image. With `keep`, a write is torn: only the
/// disk sectors (512-byte, aligned to the file) for which `keep` answers 1
/// are written.
static void apply(Tracked *file, const Pending *op, int (*keep)(void *), void *context) {
    if (op->amount < 0) {
        if (op->offset < file->size) file->size = op->offset;
        return;
    }
    sqlite3_int64 end = op->offset + op->amount;
    reserve(file, end);
    if (end > file->size) {
        // Past the old end the file reads as zeros, whatever a torn write left out.
        memset(file->durable + file->size, 0, (size_t)(end - file->size));
        file->size = end;
    }
    if (keep == NULL) {
        memcpy(file->durable + op->offset, op->data, (size_t)op->amount);
        return;
    }
    for (sqlite3_int64 from = op->offset; from < end;) {
        sqlite3_int64 to = (from / SECTOR + 1) * SECTOR;
        if (to > end) to = end;
        if (keep(context)) memcpy(file->durable + from, op->data + (from - op->offset), (size_t)(to - from));
        from = to;
    }
}

static void dropPending(Tracked *file) {
    for (int index = 0; index < file->pendingCount; index++) free(file->pending[index].data);
    file->pendingCount = 0;
}

static void addPending(Tracked *file, sqlite3_int64 offset, int amount, const void *data) {
    if (file->pendingCount == file->pendingCapacity) {
        int capacity = file->pendingCapacity > 0 ? file->pendingCapacity * 2 : 64;
        file->pending = checked(realloc(file->pending, sizeof(Pending) * (size_t)capacity));
        file->pendingCapacity = capacity;
    }
    Pending *op = &file->pending[file->pendingCount];
    op->offset = offset;
    op->amount = amount;
    op->data = NULL;
    op->sequence = file->nextSequence++;
    if (amount > 0) {
        op->data = checked(malloc((size_t)amount));
        memcpy(op->data, data, (size_t)amount);
    }
    file->pendingCount++;
}

/// A sync that began when `nextSequence` was `before` ended: the operations
/// recorded before it are on the disk.
static void makeDurable(Tracked *file, unsigned long long before) {
    int done = 0;
    while (done < file->pendingCount && file->pending[done].sequence < before) {
        apply(file, &file->pending[done], NULL, NULL);
        free(file->pending[done].data);
        done++;
    }
    memmove(file->pending, file->pending + done, sizeof(Pending) * (size_t)(file->pendingCount - done));
    file->pendingCount -= done;
}

static Tracked *trackedFor(const char *path, int create) {
    for (Tracked *file = trackedFiles; file; file = file->next) {
        if (strcmp(file->path, path) == 0) return file;
    }
    if (!create) return NULL;
    Tracked *file = checked(calloc(1, sizeof(Tracked)));
    file->path = checked(strdup(path));
    file->next = trackedFiles;
    trackedFiles = file;
    return file;
}

static int plClose(sqlite3_file *base) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xClose(file->real);
}

static int plRead(sqlite3_file *base, void *out, int amount, sqlite3_int64 offset) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xRead(file->real, out, amount, offset);
}

static int plWrite(sqlite3_file *base, const void *data, int amount, sqlite3_int64 offset) {
    PowerLossFile *file = (PowerLossFile *)base;
    if (file->tracked == NULL) return file->real->pMethods->xWrite(file->real, data, amount, offset);
    pthread_mutex_lock(&lock);
    int rc = file->real->pMethods->xWrite(file->real, data, amount, offset);
    if (rc == SQLITE_OK) addPending(file->tracked, offset, amount, data);
    pthread_mutex_unlock(&lock);
    return rc;
}

static int plTruncate(sqlite3_file *base, sqlite3_int64 size) {
    PowerLossFile *file = (PowerLossFile *)base;
    if (file->tracked == NULL) return file->real->pMethods->xTruncate(file->real, size);
    pthread_mutex_lock(&lock);
    int rc = file->real->pMethods->xTruncate(file->real, size);
    if (rc == SQLITE_OK) addPending(file->tracked, size, -1, NULL);
    pthread_mutex_unlock(&lock);
    return rc;
}

static int plSync(sqlite3_file *base, int flags) {
    PowerLossFile *file = (PowerLossFile *)base;
    if (file->tracked == NULL) return file->real->pMethods->xSync(file->real, flags);
    // What was written before the sync began is on the disk once it returns;
    // the lock is not held meanwhile, so snapshots can fall inside it.
    pthread_mutex_lock(&lock);
    unsigned long long before = file->tracked->nextSequence;
    pthread_mutex_unlock(&lock);
    int rc = file->real->pMethods->xSync(file->real, flags);
    if (rc == SQLITE_OK) {
        pthread_mutex_lock(&lock);
        makeDurable(file->tracked, before);
        syncs++;
        pthread_mutex_unlock(&lock);
    }
    return rc;
}

static int plFileSize(sqlite3_file *base, sqlite3_int64 *size) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xFileSize(file->real, size);
}

static int plLock(sqlite3_file *base, int level) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xLock(file->real, level);
}

static int plUnlock(sqlite3_file *base, int level) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xUnlock(file->real, level);
}

static int plCheckReservedLock(sqlite3_file *base, int *out) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xCheckReservedLock(file->real, out);
}

static int plFileControl(sqlite3_file *base, int op, void *argument) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xFileControl(file->real, op, argument);
}

static int plSectorSize(sqlite3_file *base) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xSectorSize(file->real);
}

static int plDeviceCharacteristics(sqlite3_file *base) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xDeviceCharacteristics(file->real);
}

static int plShmMap(sqlite3_file *base, int region, int size, int extend, void volatile **out) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xShmMap(file->real, region, size, extend, out);
}

static int plShmLock(sqlite3_file *base, int offset, int count, int flags) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xShmLock(file->real, offset, count, flags);
}

static void plShmBarrier(sqlite3_file *base) {
    PowerLossFile *file = (PowerLossFile *)base;
    file->real->pMethods->xShmBarrier(file->real);
}

static int plShmUnmap(sqlite3_file *base, int delete) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xShmUnmap(file->real, delete);
}

static int plFetch(sqlite3_file *base, sqlite3_int64 offset, int amount, void **out) {
    // No memory mapping: every read goes through xRead.
    (void)base; (void)offset; (void)amount;
    *out = NULL;
    return SQLITE_OK;
}

static int plUnfetch(sqlite3_file *base, sqlite3_int64 offset, void *pointer) {
    (void)base; (void)offset; (void)pointer;
    return SQLITE_OK;
}

static int isTracked(const char *name, int flags) {
    return name != NULL && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0
        && trackedDirectoryLength > 0 && strncmp(name, trackedDirectory, trackedDirectoryLength) == 0
        && name[trackedDirectoryLength] == '/';
}

static int plOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *base, int flags, int *outFlags) {
    (void)vfs;
    PowerLossFile *file = (PowerLossFile *)base;
    memset(file, 0, sizeof(PowerLossFile));
    file->real = (sqlite3_file *)(file + 1);
    int rc = inner->xOpen(inner, name, file->real, flags, outFlags);
    if (file->real->pMethods == NULL) {
        file->base.pMethods = NULL;
        return rc;
    }
    if (file->real->pMethods->iVersion < 3) {
        file->real->pMethods->xClose(file->real);
        file->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    if (rc == SQLITE_OK && isTracked(name, flags)) {
        pthread_mutex_lock(&lock);
        Tracked *tracked = trackedFor(name, 1);
        if (tracked->deleted) {
            tracked->deleted = 0;
            tracked->size = 0;
            dropPending(tracked);
        }
        file->tracked = tracked;
        pthread_mutex_unlock(&lock);
    }
    file->base.pMethods = &powerLossMethods;
    return rc;
}

static int plDelete(sqlite3_vfs *vfs, const char *name, int syncDirectory) {
    (void)vfs;
    pthread_mutex_lock(&lock);
    int rc = inner->xDelete(inner, name, syncDirectory);
    Tracked *tracked = rc == SQLITE_OK ? trackedFor(name, 0) : NULL;
    if (tracked != NULL) {
        tracked->deleted = 1;
        tracked->size = 0;
        dropPending(tracked);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int plAccess(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
    (void)vfs;
    return inner->xAccess(inner, name, flags, out);
}

static int plFullPathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
    (void)vfs;
    return inner->xFullPathname(inner, name, size, out);
}

static void *plDlOpen(sqlite3_vfs *vfs, const char *name) {
    (void)vfs;
    return inner->xDlOpen(inner, name);
}

static void plDlError(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    inner->xDlError(inner, size, out);
}

static void (*plDlSym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
    (void)vfs;
    return inner->xDlSym(inner, handle, symbol);
}

static void plDlClose(sqlite3_vfs *vfs, void *handle) {
    (void)vfs;
    inner->xDlClose(inner, handle);
}

static int plRandomness(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return inner->xRandomness(inner, size, out);
}

static int plSleep(sqlite3_vfs *vfs, int micros) {
    (void)vfs;
    return inner->xSleep(inner, micros);
}

static int plCurrentTime(sqlite3_vfs *vfs, double *out) {
    (void)vfs;
    return inner->xCurrentTime(inner, out);
}

static int plGetLastError(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return inner->xGetLastError ? inner->xGetLastError(inner, size, out) : 0;
}

static int plCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
    (void)vfs;
    return inner->xCurrentTimeInt64(inner, out);
}

int powerloss_register(const char *directory) {
    char resolved[PATH_MAX];
    if (realpath(directory, resolved) == NULL) return SQLITE_CANTOPEN;
    pthread_mutex_lock(&lock);
    if (inner != NULL) {
        pthread_mutex_unlock(&lock);
        return SQLITE_MISUSE;  // once per process
    }
    inner = sqlite3_vfs_find(NULL);
    if (inner == NULL || inner->iVersion < 2 || inner->xCurrentTimeInt64 == NULL) {
        inner = NULL;
        pthread_mutex_unlock(&lock);
        return SQLITE_ERROR;
    }
    strcpy(trackedDirectory, resolved);
    trackedDirectoryLength = strlen(resolved);
    powerLossMethods = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = plClose,
        .xRead = plRead,
        .xWrite = plWrite,
        .xTruncate = plTruncate,
        .xSync = plSync,
        .xFileSize = plFileSize,
        .xLock = plLock,
        .xUnlock = plUnlock,
        .xCheckReservedLock = plCheckReservedLock,
        .xFileControl = plFileControl,
        .xSectorSize = plSectorSize,
        .xDeviceCharacteristics = plDeviceCharacteristics,
        .xShmMap = plShmMap,
        .xShmLock = plShmLock,
        .xShmBarrier = plShmBarrier,
        .xShmUnmap = plShmUnmap,
        .xFetch = plFetch,
        .xUnfetch = plUnfetch,
    };
    powerLossVFS = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(PowerLossFile) + inner->szOsFile,
        .mxPathname = inner->mxPathname,
        .zName = "powerloss",
        .xOpen = plOpen,
        .xDelete = plDelete,
        .xAccess = plAccess,
        .xFullPathname = plFullPathname,
        .xDlOpen = plDlOpen,
        .xDlError = plDlError,
        .xDlSym = plDlSym,
        .xDlClose = plDlClose,
        .xRandomness = plRandomness,
        .xSleep = plSleep,
        .xCurrentTime = plCurrentTime,
        .xGetLastError = plGetLastError,
        .xCurrentTimeInt64 = plCurrentTimeInt64,
    };
    int rc = sqlite3_vfs_register(&powerLossVFS, 1);
    pthread_mutex_unlock(&lock);
    return rc;
}

static unsigned long long nextRandom(unsigned long long *state) {
    // xorshift64*
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ULL;
}

static int keepSector(void *state) {
    return (int)(nextRandom(state) >> 63);
}

int powerloss_snapshot(const char *outDirectory, unsigned int seed, long long *pendingSeen) {
    unsigned long long random = ((unsigned long long)seed << 1 | 1) * 0x9E3779B97F4A7C15ULL;
    // The images are made under the lock, and written out after it.
    int count = 0;
    Tracked *images = NULL;
    long long pending = 0;
    pthread_mutex_lock(&lock);
    for (Tracked *file = trackedFiles; file; file = file->next) if (!file->deleted) count++;
    images = checked(calloc((size_t)(count > 0 ? count : 1), sizeof(Tracked)));
    int index = 0;
    for (Tracked *file = trackedFiles; file; file = file->next) {
        if (file->deleted) continue;
        // An image of the file: its synced content, then a random part of the rest.
        Tracked *image = &images[index++];
        image->path = file->path;
        reserve(image, file->size > 0 ? file->size : 1);
        if (file->size > 0) memcpy(image->durable, file->durable, (size_t)file->size);
        image->size = file->size;
        pending += file->pendingCount;
        for (int op = 0; op < file->pendingCount; op++) {
            unsigned long long choice = nextRandom(&random) % 4;
            const Pending *operation = &file->pending[op];
            if (operation->amount < 0) {
                if (choice < 2) apply(image, operation, NULL, NULL);
            } else if (choice == 1 || choice == 2) {
                apply(image, operation, NULL, NULL);
            } else if (choice == 3) {
                apply(image, operation, keepSector, &random);  // torn
            }  // 0: lost
        }
    }
    pthread_mutex_unlock(&lock);
    int written = 0;
    for (index = 0; index < count; index++) {
        Tracked *image = &images[index];
        if (written >= 0) {
            const char *slash = strrchr(image->path, '/');
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", outDirectory, slash ? slash + 1 : image->path);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            int ok = fd >= 0;
            sqlite3_int64 done = 0;
            while (ok && done < image->size) {
                ssize_t n = write(fd, image->durable + done, (size_t)(image->size - done));
                if (n <= 0) ok = 0; else done += n;
            }
            if (fd >= 0) close(fd);
            written = ok ? written + 1 : -1;
        }
        free(image->durable);
    }
    free(images);
    if (pendingSeen) *pendingSeen = pending;
    return written;
}

long long powerloss_syncs(void) {
    pthread_mutex_lock(&lock);
    long long count = syncs;
    pthread_mutex_unlock(&lock);
    return count;
}

long long powerloss_pending_writes(void) {
    pthread_mutex_lock(&lock);
    long long count = 0;
    for (Tracked *file = trackedFiles; file; file = file->next) count += file->pendingCount;
    pthread_mutex_unlock(&lock);
    return count;
}
