#include "tp_cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "tp_shard.h"

typedef struct rank {
    struct cs_tp_cpu *tp;
    int r;
    cs_model shard;
    cs_kv_cache kv;
    cs_pool *pool;
    cs_forward *fwd;
    pthread_t thread;
    bool started;
} rank;

struct cs_tp_cpu {
    int n;
    rank *ranks;
    pthread_barrier_t step;   // the caller and the ranks: a step starts, a step ends
    pthread_barrier_t reduce; // the ranks, around each all-reduce
    const cs_batch *batch;
    float *logits;
    bool stop;
    float **parts; // (n) each rank's partial output of the current all-reduce
    float *sum;    // (max_tokens, dim) the summed output
};

// Sums x over the ranks: publish, add up this rank's slice in rank order, copy the sum back.
static void allreduce(void *ctx, float *x, size_t n) {
    rank *k = ctx;
    cs_tp_cpu *tp = k->tp;
    tp->parts[k->r] = x;
    pthread_barrier_wait(&tp->reduce);
    size_t i0 = n * (size_t)k->r / (size_t)tp->n, i1 = n * (size_t)(k->r + 1) / (size_t)tp->n;
    memcpy(tp->sum + i0, tp->parts[0] + i0, (i1 - i0) * sizeof(float));
    for (int r = 1; r < tp->n; r++) {
        const float *p = tp->parts[r];
        for (size_t i = i0; i < i1; i++) tp->sum[i] += p[i];
    }
    pthread_barrier_wait(&tp->reduce); // every slice is summed, and every partial read
    memcpy(x, tp->sum, n * sizeof(float));
}

static void *rank_main(void *arg) {
    rank *k = arg;
    cs_tp_cpu *tp = k->tp;
    for (;;) {
        pthread_barrier_wait(&tp->step);
        if (tp->stop) break;
        cs_forward_run(k->fwd, tp->batch, k->r == 0 ? tp->logits : NULL);
        pthread_barrier_wait(&tp->step);
    }
    return NULL;
}

void cs_tp_cpu_free(cs_tp_cpu *tp) {
    if (!tp) return;
    bool running = tp->ranks && tp->ranks[tp->n - 1].started;
    if (running) { // every rank thread exists only when all started (init fails otherwise)
        tp->stop = true;
        pthread_barrier_wait(&tp->step);
        for (int r = 0; r < tp->n; r++) pthread_join(tp->ranks[r].thread, NULL);
    }
    for (int r = 0; tp->ranks && r < tp->n; r++) {
        rank *k = &tp->ranks[r];
        cs_forward_free(k->fwd);
        cs_pool_free(k->pool);
        cs_kv_cache_free(&k->kv);
        cs_model_free(&k->shard);
    }
    pthread_barrier_destroy(&tp->step);
    pthread_barrier_destroy(&tp->reduce);
    free(tp->ranks);
    free(tp->parts);
    free(tp->sum);
    free(tp);
}

cs_status cs_tp_cpu_init(const cs_model *m, int n_ranks, int n_blocks, int block_size, int max_tokens, int max_ctx,
                         int threads_per_rank, cs_tp_cpu **out, char *err, size_t errlen) {
    *out = NULL;
    if (n_ranks < 1 || n_ranks > 256)
        return cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel size %d: use 1 to 256", n_ranks);
    cs_tp_cpu *tp = calloc(1, sizeof *tp);
    if (!tp) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    tp->n = n_ranks;
    if (pthread_barrier_init(&tp->step, NULL, (unsigned)n_ranks + 1) != 0) {
        free(tp);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "cannot make a barrier");
    }
    if (pthread_barrier_init(&tp->reduce, NULL, (unsigned)n_ranks) != 0) {
        pthread_barrier_destroy(&tp->step);
        free(tp);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "cannot make a barrier");
    }
    tp->ranks = calloc((size_t)n_ranks, sizeof *tp->ranks);
    tp->parts = calloc((size_t)n_ranks, sizeof *tp->parts);
    tp->sum = malloc(sizeof(float) * (size_t)max_tokens * (size_t)m->cfg.dim);
    cs_status st = !tp->ranks || !tp->parts || !tp->sum ? cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory") : CS_OK;
    for (int r = 0; r < n_ranks && st == CS_OK; r++) {
        rank *k = &tp->ranks[r];
        k->tp = tp;
        k->r = r;
        st = cs_tp_shard(m, n_ranks, r, 1, &k->shard, err, errlen);
        if (st == CS_OK)
            st = cs_kv_cache_init(&k->kv, m->cfg.n_layer, n_blocks, block_size, k->shard.cfg.n_head_kv * m->cfg.head_dim,
                                  err, errlen);
        if (st == CS_OK && !(k->pool = cs_pool_init(threads_per_rank)))
            st = cs_errf(err, errlen, CS_ERR_NOMEM, "cannot start a thread pool");
        if (st == CS_OK && !(k->fwd = cs_forward_init(&k->shard, &k->kv, max_tokens, max_ctx, k->pool, err, errlen)))
            st = CS_ERR_NOMEM;
        if (st == CS_OK) cs_forward_set_allreduce(k->fwd, allreduce, k);
    }
    if (st != CS_OK) {
        cs_tp_cpu_free(tp);
        return st;
    }
    for (int r = 0; r < n_ranks; r++) {
        if (pthread_create(&tp->ranks[r].thread, NULL, rank_main, &tp->ranks[r]) != 0) {
            // the started ones wait at the step barrier, which can never fill: end the process
            // rather than leave them
            CS_ASSERT(0 && "cannot start a tensor-parallel rank thread");
        }
        tp->ranks[r].started = true;
    }
    *out = tp;
    return CS_OK;
}

void cs_tp_cpu_run(cs_tp_cpu *tp, const cs_batch *b, float *logits) {
    tp->batch = b;
    tp->logits = logits;
    pthread_barrier_wait(&tp->step);
    pthread_barrier_wait(&tp->step);
}

size_t cs_tp_cpu_weight_bytes(const cs_tp_cpu *tp, int r) { return cs_tp_shard_layer_bytes(&tp->ranks[r].shard); }

void cs_tp_cpu_copy_rows(cs_tp_cpu *tp, int dst, int src, int n_rows) {
    for (int r = 0; r < tp->n; r++) cs_kv_cache_copy_rows(&tp->ranks[r].kv, dst, src, n_rows);
}
