#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

// A forward pass runs hundreds of loops a step, a few to a few hundred microseconds apart.
// Waking a sleeping thread through the kernel costs tens of microseconds on a VM, so the
// workers (and the caller, waiting for them) watch for the next loop this long before they
// sleep: 0.2 ms of spinning now and then costs less than a wake-up per loop.
#define SPIN_NS 200000

struct worker_arg;

struct cs_pool {
    int n_threads;        // including the caller
    pthread_t *workers;   // n_threads - 1
    struct worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    atomic_uint generation; // bumped for each loop, under mu
    atomic_int busy;        // workers still inside the current loop
    atomic_bool stop;
    // the current loop
    cs_pool_fn fn;
    void *ctx;
    int n;
    atomic_int next;      // next index to hand out
};

// Indices are handed out one by one: loops here have few, coarse items (rows blocks, heads).
static void drain(cs_pool *p, int thread) {
    for (;;) {
        int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n) return;
        p->fn(p->ctx, i, thread);
    }
}

typedef struct worker_arg {
    cs_pool *pool;
    int thread;
} worker_arg;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

// Spins up to SPIN_NS until done(p, arg); whether it became true.
static bool spin_until(cs_pool *p, bool (*done)(cs_pool *, unsigned), unsigned arg) {
    long long end = 0;
    for (int i = 0;; i++) {
        if (done(p, arg)) return true;
        // give the core away if another thread wants it (more threads than cores, or other
        // processes): a spinner that kept it would starve the thread it waits for
        sched_yield();
        if (i % 16 == 15) { // the clock only now and then
            long long t = now_ns();
            if (end == 0) end = t + SPIN_NS;
            else if (t > end) return false;
        }
    }
}

static bool new_loop(cs_pool *p, unsigned seen) {
    return atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
           atomic_load_explicit(&p->stop, memory_order_acquire);
}

static bool all_done(cs_pool *p, unsigned unused) {
    (void)unused;
    return atomic_load_explicit(&p->busy, memory_order_acquire) == 0;
}

static void *worker_main(void *arg) {
    cs_pool *p = ((worker_arg *)arg)->pool;
    int thread = ((worker_arg *)arg)->thread;
    unsigned seen = 0;
    for (;;) {
        if (!spin_until(p, new_loop, seen)) {
            pthread_mutex_lock(&p->mu);
            while (!p->stop && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (p->stop) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        drain(p, thread);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
            // the caller may be asleep on done: signal under the mutex it checks busy with
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

cs_pool *cs_pool_init(int n_threads) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    cs_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    p->args = calloc((size_t)n_threads, sizeof *p->args);
    if (!p->workers || !p->args) {
        free(p->workers);
        free(p->args);
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < n_threads - 1; i++) {
        p->args[i] = (worker_arg){p, i + 1};
        if (pthread_create(&p->workers[i], NULL, worker_main, &p->args[i]) != 0) {
            p->n_threads = i + 1; // run with the threads we got
            break;
        }
    }
    return p;
}

void cs_pool_free(cs_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p->args);
    free(p);
}

int cs_pool_threads(const cs_pool *p) { return p ? p->n_threads : 1; }

void cs_pool_run(cs_pool *p, cs_pool_fn fn, void *ctx, int n) {
    if (!p || p->n_threads == 1 || n <= 1) {
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n_threads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release); // publishes the loop
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    if (spin_until(p, all_done, 0)) return;
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
