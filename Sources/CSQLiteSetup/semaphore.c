// sem_clockwait, which glibc declares only with _GNU_SOURCE (so Swift's Glibc
// module does not see it): a semaphore wait against the monotonic clock,
// which steps of the wall clock do not move.
#define _GNU_SOURCE
#include <errno.h>
#include <semaphore.h>
#include <time.h>
#include "CSQLiteSetup.h"

int hookbus_sem_wait_monotonic(void *semaphore, long long nanoseconds) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    long long nanos = deadline.tv_nsec + nanoseconds;
    deadline.tv_sec += nanos / 1000000000LL;
    deadline.tv_nsec = nanos % 1000000000LL;
    int rc;
    while ((rc = sem_clockwait((sem_t *)semaphore, CLOCK_MONOTONIC, &deadline)) != 0 && errno == EINTR) {}
    return rc;
}
