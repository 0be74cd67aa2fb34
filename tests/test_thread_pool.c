// The thread pool (common/thread_pool.h): every index of every loop runs exactly once, on a
// valid thread, before cs_pool_run returns; loops back to back (the workers still spinning),
// loops after a pause (the workers asleep), loops of 0 and 1 index, and pools freed in either
// state. The sanitizer pass of scripts/test.sh runs this too.
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "common/thread_pool.h"
#include "test_util.h"

#define MAX_N 64

typedef struct loop {
    atomic_int count[MAX_N];
    int n_threads;
    atomic_int bad_thread;
} loop;

static void count_index(void *ctx, int i, int thread) {
    loop *l = ctx;
    atomic_fetch_add(&l->count[i], 1);
    if (thread < 0 || thread >= l->n_threads) atomic_fetch_add(&l->bad_thread, 1);
}

static void pause_ms(int ms) {
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

// Runs `loops` loops of 0..MAX_N - 1 indices, sleeping `pause` ms after every seventh; the
// number of loops where some index did not run exactly once.
static int run_loops(cs_pool *p, int loops, int pause) {
    static loop l;
    int wrong = 0;
    for (int r = 0; r < loops; r++) {
        int n = (r * 37) % MAX_N;
        memset(&l, 0, sizeof l);
        l.n_threads = cs_pool_threads(p);
        cs_pool_run(p, count_index, &l, n);
        bool ok = atomic_load(&l.bad_thread) == 0;
        for (int i = 0; i < MAX_N; i++) ok &= atomic_load(&l.count[i]) == (i < n);
        wrong += !ok;
        if (pause && r % 7 == 6) pause_ms(pause);
    }
    return wrong;
}

int main(void) {
    for (int threads = 1; threads <= 4; threads++) {
        cs_pool *p = cs_pool_init(threads);
        TEST_COND(p != NULL && cs_pool_threads(p) == threads);
        int wrong = run_loops(p, 20000, 0);
        TEST_CONDF(wrong == 0, "%d threads, back to back: %d of 20000 loops ran some index not once", threads, wrong);
        wrong = run_loops(p, 70, 2); // 2 ms: past the spin, so the workers sleep and are woken
        TEST_CONDF(wrong == 0, "%d threads, with pauses: %d of 70 loops ran some index not once", threads, wrong);
        cs_pool_free(p); // right after a pause: the workers asleep
        p = cs_pool_init(threads);
        TEST_COND(run_loops(p, 100, 0) == 0);
        cs_pool_free(p); // right after a loop: the workers spinning
    }
    cs_pool_free(NULL);
    static loop l;
    l.n_threads = 1;
    cs_pool_run(NULL, count_index, &l, 3); // no pool: inline
    TEST_COND(atomic_load(&l.count[0]) == 1 && atomic_load(&l.count[2]) == 1 && atomic_load(&l.count[3]) == 0);
    return TEST_REPORT();
}
