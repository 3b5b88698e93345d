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
// Every tracked write, truncate and sync holds one mutex, as does a snapshot,
// so a snapshot is a consistent cut of the operations around it.
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
} Pending;

typedef struct Tracked {
    char *path;
    unsigned char *durable;
    sqlite3_int64 size;      // of the durable image
    sqlite3_int64 capacity;
    Pending *pending;
    int pendingCount;
    int pendingCapacity;
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

static int reserve(Tracked *file, sqlite3_int64 size) {
    if (size <= file->capacity) return 1;
    sqlite3_int64 capacity = file->capacity > 0 ? file->capacity : 1 << 16;
    while (capacity < size) capacity *= 2;
    unsigned char *grown = realloc(file->durable, (size_t)capacity);
    if (grown == NULL) return 0;
    memset(grown + file->capacity, 0, (size_t)(capacity - file->capacity));
    file->durable = grown;
    file->capacity = capacity;
    return 1;
}

/// Applies one operation to an image of `size` bytes (growing it as needed).
static int apply(Tracked *file, const Pending *op, const unsigned char *mask) {
    if (op->amount < 0) {
        if (op->offset < file->size) file->size = op->offset;
        return 1;
    }
    sqlite3_int64 end = op->offset + op->amount;
    if (!reserve(file, end)) return 0;
    if (end > file->size) {
        // Bytes between the old end and the write read as zeros.
        if (op->offset > file->size) memset(file->durable + file->size, 0, (size_t)(op->offset - file->size));
        file->size = end;
    }
    if (mask == NULL) {
        memcpy(file->durable + op->offset, op->data, (size_t)op->amount);
    } else {
        for (int sector = 0; sector * 512 < op->amount; sector++) {
            if (!mask[sector]) continue;
            int from = sector * 512;
            int length = op->amount - from < 512 ? op->amount - from : 512;
            memcpy(file->durable + op->offset + from, op->data + from, (size_t)length);
        }
    }
    return 1;
}

static void dropPending(Tracked *file) {
    for (int index = 0; index < file->pendingCount; index++) free(file->pending[index].data);
    file->pendingCount = 0;
}

static int addPending(Tracked *file, sqlite3_int64 offset, int amount, const void *data) {
    if (file->pendingCount == file->pendingCapacity) {
        int capacity = file->pendingCapacity > 0 ? file->pendingCapacity * 2 : 64;
        Pending *grown = realloc(file->pending, sizeof(Pending) * (size_t)capacity);
        if (grown == NULL) return 0;
        file->pending = grown;
        file->pendingCapacity = capacity;
    }
    Pending *op = &file->pending[file->pendingCount];
    op->offset = offset;
    op->amount = amount;
    op->data = NULL;
    if (amount > 0) {
        op->data = malloc((size_t)amount);
        if (op->data == NULL) return 0;
        memcpy(op->data, data, (size_t)amount);
    }
    file->pendingCount++;
    return 1;
}

static Tracked *trackedFor(const char *path, int create) {
    for (Tracked *file = trackedFiles; file; file = file->next) {
        if (strcmp(file->path, path) == 0) return file;
    }
    if (!create) return NULL;
    Tracked *file = calloc(1, sizeof(Tracked));
    if (file == NULL) return NULL;
    file->path = strdup(path);
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
    if (rc == SQLITE_OK && !addPending(file->tracked, offset, amount, data)) rc = SQLITE_NOMEM;
    pthread_mutex_unlock(&lock);
    return rc;
}

static int plTruncate(sqlite3_file *base, sqlite3_int64 size) {
    PowerLossFile *file = (PowerLossFile *)base;
    if (file->tracked == NULL) return file->real->pMethods->xTruncate(file->real, size);
    pthread_mutex_lock(&lock);
    int rc = file->real->pMethods->xTruncate(file->real, size);
    if (rc == SQLITE_OK && !addPending(file->tracked, size, -1, NULL)) rc = SQLITE_NOMEM;
    pthread_mutex_unlock(&lock);
    return rc;
}

static int plSync(sqlite3_file *base, int flags) {
    PowerLossFile *file = (PowerLossFile *)base;
    if (file->tracked == NULL) return file->real->pMethods->xSync(file->real, flags);
    pthread_mutex_lock(&lock);
    int rc = file->real->pMethods->xSync(file->real, flags);
    if (rc == SQLITE_OK) {
        Tracked *tracked = file->tracked;
        for (int index = 0; index < tracked->pendingCount; index++) {
            if (!apply(tracked, &tracked->pending[index], NULL)) { rc = SQLITE_NOMEM; break; }
        }
        dropPending(tracked);
        syncs++;
    }
    pthread_mutex_unlock(&lock);
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
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xFetch(file->real, offset, amount, out);
}

static int plUnfetch(sqlite3_file *base, sqlite3_int64 offset, void *pointer) {
    PowerLossFile *file = (PowerLossFile *)base;
    return file->real->pMethods->xUnfetch(file->real, offset, pointer);
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
        if (tracked != NULL && tracked->deleted) {
            tracked->deleted = 0;
            tracked->size = 0;
            dropPending(tracked);
        }
        file->tracked = tracked;
        pthread_mutex_unlock(&lock);
        if (tracked == NULL) rc = SQLITE_NOMEM;
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

int powerloss_snapshot(const char *outDirectory, unsigned int seed) {
    unsigned long long random = ((unsigned long long)seed << 1 | 1) * 0x9E3779B97F4A7C15ULL;
    int written = 0;
    pthread_mutex_lock(&lock);
    for (Tracked *file = trackedFiles; file; file = file->next) {
        if (file->deleted) continue;
        // An image of the file: its synced content, then a random part of the rest.
        Tracked image = { .path = file->path };
        if (!reserve(&image, file->size > 0 ? file->size : 1)) { written = -1; break; }
        memcpy(image.durable, file->durable, (size_t)file->size);
        image.size = file->size;
        unsigned char mask[(1 << 17) / 512 + 1];
        int ok = 1;
        for (int index = 0; index < file->pendingCount && ok; index++) {
            const Pending *op = &file->pending[index];
            unsigned long long choice = nextRandom(&random) % 4;
            if (op->amount < 0) {
                if (choice < 2) ok = apply(&image, op, NULL);
            } else if (choice == 1 || choice == 2) {
                ok = apply(&image, op, NULL);
            } else if (choice == 3) {
                // Torn: some sectors made it, others did not.
                int sectors = (op->amount + 511) / 512;
                if (sectors > (int)sizeof(mask)) {
                    ok = apply(&image, op, NULL);
                } else {
                    for (int sector = 0; sector < sectors; sector++) mask[sector] = nextRandom(&random) & 1;
                    ok = apply(&image, op, mask);
                }
            }
        }
        if (ok) {
            const char *slash = strrchr(file->path, '/');
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", outDirectory, slash ? slash + 1 : file->path);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0) {
                ok = 0;
            } else {
                sqlite3_int64 done = 0;
                while (ok && done < image.size) {
                    ssize_t n = write(fd, image.durable + done, (size_t)(image.size - done));
                    if (n <= 0) ok = 0; else done += n;
                }
                close(fd);
            }
        }
        free(image.durable);
        if (!ok) { written = -1; break; }
        written++;
    }
    pthread_mutex_unlock(&lock);
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
