// Monotonic wall time in seconds, for timings and deadlines.
#ifndef CS_CLOCK_H
#define CS_CLOCK_H

#include <time.h>

static inline double cs_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
