// A fixed pool of worker threads for data-parallel loops: cs_pool_run(pool, fn, ctx, n)
// calls fn(ctx, i, thread) once for every i in [0, n), spread over the workers and the
// caller, and returns when all are done. thread (0 = the caller) indexes per-thread scratch. Which thread runs an index never changes a result: callers
// give each index its own outputs, so results do not depend on the thread count.
#ifndef CS_THREAD_POOL_H
#define CS_THREAD_POOL_H

typedef struct cs_pool cs_pool;
typedef void (*cs_pool_fn)(void *ctx, int index, int thread);

// n_threads counts the calling thread; 0 means one per online core. NULL on failure.
cs_pool *cs_pool_init(int n_threads);
void cs_pool_free(cs_pool *p);
int cs_pool_threads(const cs_pool *p);
// Runs fn over [0, n). Not reentrant: one loop at a time per pool. A NULL pool runs inline.
void cs_pool_run(cs_pool *p, cs_pool_fn fn, void *ctx, int n);

#endif
