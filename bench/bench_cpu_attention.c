// CPU paged attention (the reference kernel, which is also the CPU path): prefill of one
// sequence (every token against its causal prefix) and decode (one token per sequence against
// its whole context), at the default model's heads (9 q / 3 kv, d = 64) and Llama-3-8B's
// (32 / 8, d = 128), block 16, shuffled blocks. Validates a few rows against a double-precision
// softmax first; prints ms and GFLOP/s (4 * d FLOPs per visible (query head, position) pair).
//
//     bench_cpu_attention [THREADS [CASE]]     (CASE: one row of the table, from 0)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/assert.h"
#include "common/clock.h"
#include "kernels/kernels.h"

#define BLOCK 16

typedef struct shape {
    const char *name;
    int n_head, n_kv, hd;
} shape;

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

// Token t of sequence s, query head h, against the sequence's first `visible` positions.
static void check_row(const float *out, const float *q, const float *k, const float *v, const int32_t *bt, int visible,
                      const shape *sh, float scale) {
    int group = sh->n_head / sh->n_kv, kv_dim = sh->n_kv * sh->hd;
    for (int h = 0; h < sh->n_head; h += 4) {
        const float *qh = q + (size_t)h * sh->hd;
        int kvh = h / group;
        double *p = malloc(sizeof(double) * (size_t)visible), m = -INFINITY, sum = 0;
        for (int j = 0; j < visible; j++) {
            size_t slot = (size_t)bt[j / BLOCK] * BLOCK + j % BLOCK;
            double dot = 0;
            for (int d = 0; d < sh->hd; d++) dot += (double)qh[d] * k[slot * kv_dim + (size_t)kvh * sh->hd + d];
            p[j] = dot * scale;
            if (p[j] > m) m = p[j];
        }
        for (int j = 0; j < visible; j++) sum += p[j] = exp(p[j] - m);
        for (int d = 0; d < sh->hd; d++) {
            double o = 0, mag = 0;
            for (int j = 0; j < visible; j++) {
                size_t slot = (size_t)bt[j / BLOCK] * BLOCK + j % BLOCK;
                double x = p[j] / sum * v[slot * kv_dim + (size_t)kvh * sh->hd + d];
                o += x;
                mag += fabs(x);
            }
            CS_ASSERT(fabs(out[(size_t)h * sh->hd + d] - o) <= 1e-4 * mag + 1e-6);
        }
        free(p);
    }
}

// n_seqs sequences of kv_len positions each; q_len new tokens each (q_len == kv_len: prefill).
static void run(const shape *sh, int n_seqs, int kv_len, int q_len, cs_pool *pool) {
    int n_tok = n_seqs * q_len, kv_dim = sh->n_kv * sh->hd, blocks_per = (kv_len + BLOCK - 1) / BLOCK;
    int n_blocks = n_seqs * blocks_per;
    size_t kv_floats = (size_t)n_blocks * BLOCK * kv_dim;
    float *k = malloc(sizeof(float) * kv_floats), *v = malloc(sizeof(float) * kv_floats);
    float *q = malloc(sizeof(float) * (size_t)n_tok * sh->n_head * sh->hd);
    float *out = malloc(sizeof(float) * (size_t)n_tok * sh->n_head * sh->hd);
    unsigned seed = 12345;
    for (size_t i = 0; i < kv_floats; i++) k[i] = frand(&seed), v[i] = frand(&seed);
    for (size_t i = 0; i < (size_t)n_tok * sh->n_head * sh->hd; i++) q[i] = 4 * frand(&seed);
    int32_t *q_start = malloc(sizeof(int32_t) * (size_t)(n_seqs + 1)), *kv = malloc(sizeof(int32_t) * (size_t)n_seqs);
    int32_t *bt_start = malloc(sizeof(int32_t) * (size_t)(n_seqs + 1)), *bt = malloc(sizeof(int32_t) * (size_t)n_blocks);
    for (int s = 0; s <= n_seqs; s++) q_start[s] = s * q_len, bt_start[s] = s * blocks_per;
    for (int s = 0; s < n_seqs; s++) kv[s] = kv_len;
    for (int i = 0; i < n_blocks; i++) bt[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) { // physical blocks shuffled, as a pool in use holds them
        int j = (int)((seed = seed * 1664525u + 1013904223u) % (unsigned)(i + 1)), x = bt[i];
        bt[i] = bt[j], bt[j] = x;
    }
    cs_attn_batch b = {n_seqs, q_start, kv, bt_start, bt, BLOCK};
    float scale = 1.0f / sqrtf((float)sh->hd);
    float *scratch = malloc(cs_cpu_attention_scratch(sh->n_head, cs_pool_threads(pool)));
    cs_cpu_attention(out, q, k, v, &b, sh->n_head, sh->n_kv, sh->hd, scale, scratch, pool);
    for (int t = q_len - 1; t >= 0; t -= q_len / 3 + 1) // a few tokens of the last sequence
        check_row(out + (size_t)(n_tok - q_len + t) * sh->n_head * sh->hd, q + (size_t)(n_tok - q_len + t) * sh->n_head * sh->hd,
                  k, v, bt + bt_start[n_seqs - 1], kv_len - q_len + t + 1, sh, scale);

    double pairs = 0; // visible (token, position) pairs
    for (int t = 0; t < q_len; t++) pairs += kv_len - q_len + t + 1;
    pairs *= n_seqs;
    double flop = 4.0 * sh->hd * sh->n_head * pairs, best = INFINITY;
    int reps = flop > 2e10 ? 2 : flop > 2e9 ? 4 : 20;
    for (int r = 0; r < reps; r++) {
        double t0 = cs_now_s();
        cs_cpu_attention(out, q, k, v, &b, sh->n_head, sh->n_kv, sh->hd, scale, scratch, pool);
        double s = cs_now_s() - t0;
        if (s < best) best = s;
    }
    printf("| %-8s | %-7s | %3d | %5d | %5d | %d | %9.2f | %6.1f |\n", sh->name, q_len == kv_len ? "prefill" : "decode",
           n_seqs, q_len, kv_len, cs_pool_threads(pool), best * 1e3, flop / best / 1e9);
    free(k), free(v), free(q), free(out), free(q_start), free(kv), free(bt_start), free(bt), free(scratch);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0, only = argc > 2 ? atoi(argv[2]) : -1;
    cs_pool *pool = cs_pool_init(threads);
    const shape small = {"9/3 d64", 9, 3, 64}, llama = {"32/8 d128", 32, 8, 128};
    printf("| heads | pass | seqs | tokens | context | threads | best ms | GFLOP/s |\n|---|---|---|---|---|---|---|---|\n");
    const struct { const shape *sh; int seqs, ctx, q; } cases[] = {
        {&small, 1, 512, 512}, {&small, 1, 2048, 2048}, {&small, 1, 2048, 1},
        {&small, 16, 1024, 1}, {&llama, 1, 1024, 1024}, {&llama, 1, 4096, 1},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++)
        if (only < 0 || only == i) run(cases[i].sh, cases[i].seqs, cases[i].ctx, cases[i].q, pool);
    cs_pool_free(pool);
    return 0;
}
