// sem_clockwait, which glibc declares only with _GNU_SOURCE (so Swift's Glibc
// module does not see it): a semaphore wait against the monotonic clock,
// which steps of the wall clock do not move. Elsewhere (no sem_clockwait),
// sem_timedwait on the realtime clock.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <semaphore.h>
#include <time.h>
#include "CSQLiteSetup.h"

int hookbus_sem_wait_monotonic(void *semaphore, long long nanoseconds) {
    struct timespec deadline;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
    clock_gettime(CLOCK_MONOTONIC, &deadline);
#else
    clock_gettime(CLOCK_REALTIME, &deadline);
#endif
    long long nanos = deadline.tv_nsec + nanoseconds;
    deadline.tv_sec += nanos / 1000000000LL;
    deadline.tv_nsec = nanos % 1000000000LL;
    int rc;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
    while ((rc = sem_clockwait((sem_t *)semaphore, CLOCK_MONOTONIC, &deadline)) != 0 && errno == EINTR) {}
#else
    while ((rc = sem_timedwait((sem_t *)semaphore, &deadline)) != 0 && errno == EINTR) {}
#endif
    return rc;
}
