// CUDA paged prefill / extend attention against the CPU reference (cs_cpu_attention on the same
// bf16 values converted to fp32). Each case is a ragged batch mixing pure prefills
// (kv_len == q_len), extends behind a cached prefix (kv_len > q_len) and single-token decodes,
// with physical blocks in shuffled order. Every cache slot no sequence position owns (the tail
// of each sequence's last block, one extra table entry past its end, unreferenced blocks) holds
// NaN bits, and the output is poisoned with NaN bits before the run, so any read of padding or
// any row left unwritten fails the comparison. Exits 77 (skipped) without CUDA or a device.
#include <stdio.h>

#include "test_util.h"

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("built without CUDA: skipped");
    return 77;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "common/rng.h"
#include "common/thread_pool.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

#define ATOL 2e-2f
#define RTOL 2e-2f
#define NAN_BITS 0xffffu // bf16 NaN

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
// uniform in [-1, 1], as bf16 bits
static uint16_t rand_bf16(void) { return cs_f32_to_bf16((float)next_u32() / 4294967296.0f * 2.0f - 1.0f); }

typedef struct seq_spec {
    int q_len, kv_len;
} seq_spec;

typedef struct case_spec {
    int head_dim, n_head, n_kv, block_size;
    float scale;       // 0: 1 / sqrt(head_dim)
    int extra_max_q;   // max_q_len passed = true max + this (the launcher takes a bound)
    int n_seqs;
    seq_spec seqs[8];
} case_spec;

static void *dev_copy(const void *h, size_t n) {
    void *d;
    CS_ASSERT(cudaMalloc(&d, n ? n : 1) == cudaSuccess);
    if (h && n) CS_ASSERT(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice) == cudaSuccess);
    return d;
}

static void run_case(const case_spec *c, cs_pool *pool) {
    const int ns = c->n_seqs, d = c->head_dim, bs = c->block_size, kv_dim = c->n_kv * d;
    const float scale = c->scale > 0 ? c->scale : 1.0f / sqrtf((float)d);
    int32_t q_start[9], kv_len[8], bt_start[9];
    int max_q = 0, max_kv = 0;
    q_start[0] = bt_start[0] = 0;
    for (int s = 0; s < ns; s++) {
        CS_ASSERT(c->seqs[s].q_len >= 1 && c->seqs[s].kv_len >= c->seqs[s].q_len);
        q_start[s + 1] = q_start[s] + c->seqs[s].q_len;
        kv_len[s] = c->seqs[s].kv_len;
        // one table entry past the last needed block: allocated for growth, holds NaN
        bt_start[s + 1] = bt_start[s] + (kv_len[s] + bs - 1) / bs + 1;
        if (c->seqs[s].q_len > max_q) max_q = c->seqs[s].q_len;
        if (kv_len[s] > max_kv) max_kv = kv_len[s];
    }
    const int n_tok = q_start[ns], n_entries = bt_start[ns];
    const int n_blocks = n_entries + 7; // 7 blocks no table references
    // physical block ids: a shuffled permutation
    int32_t *perm = malloc((size_t)n_blocks * sizeof *perm);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int k = (int)(next_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[k];
        perm[k] = t;
    }
    int32_t *table = perm; // the first n_entries ids; the rest stay unreferenced

    const size_t n_slots = (size_t)n_blocks * bs, cache_n = n_slots * kv_dim;
    const size_t q_n = (size_t)n_tok * c->n_head * d;
    uint16_t *kh = malloc(cache_n * 2), *vh = malloc(cache_n * 2), *qh = malloc(q_n * 2), *got = malloc(q_n * 2);
    float *kf = malloc(cache_n * sizeof *kf), *vf = malloc(cache_n * sizeof *vf), *qf = malloc(q_n * sizeof *qf);
    float *ref = malloc(q_n * sizeof *ref);
    for (size_t i = 0; i < cache_n; i++) kh[i] = vh[i] = NAN_BITS;
    for (int s = 0; s < ns; s++)
        for (int pos = 0; pos < kv_len[s]; pos++) {
            size_t slot = (size_t)table[bt_start[s] + pos / bs] * bs + pos % bs;
            for (int i = 0; i < kv_dim; i++) {
                kh[slot * kv_dim + i] = rand_bf16();
                vh[slot * kv_dim + i] = rand_bf16();
            }
        }
    for (size_t i = 0; i < q_n; i++) qh[i] = rand_bf16();
    for (size_t i = 0; i < cache_n; i++) {
        kf[i] = cs_bf16_to_f32(kh[i]);
        vf[i] = cs_bf16_to_f32(vh[i]);
    }
    for (size_t i = 0; i < q_n; i++) qf[i] = cs_bf16_to_f32(qh[i]);

    cs_attn_batch hb = {ns, q_start, kv_len, bt_start, table, bs};
    float *scratch = malloc(cs_cpu_attention_scratch(c->n_head, cs_pool_threads(pool)));
    cs_cpu_attention(ref, qf, kf, vf, &hb, c->n_head, c->n_kv, d, scale, scratch, pool);

    uint16_t *dq = dev_copy(qh, q_n * 2), *dk = dev_copy(kh, cache_n * 2), *dv = dev_copy(vh, cache_n * 2);
    uint16_t *dout = dev_copy(NULL, q_n * 2);
    int32_t *dqs = dev_copy(q_start, (size_t)(ns + 1) * 4), *dkl = dev_copy(kv_len, (size_t)ns * 4);
    int32_t *dbs = dev_copy(bt_start, (size_t)(ns + 1) * 4), *dbt = dev_copy(table, (size_t)n_entries * 4);
    CS_ASSERT(cudaMemset(dout, 0xff, q_n * 2) == cudaSuccess); // poison: NaN bf16
    cs_attn_batch db = {ns, dqs, dkl, dbs, dbt, bs};
    cs_cuda_attn_prefill(dout, dq, dk, dv, &db, max_q + c->extra_max_q, c->n_head, c->n_kv, d, scale, NULL);
    CS_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    CS_ASSERT(cudaMemcpy(got, dout, q_n * 2, cudaMemcpyDeviceToHost) == cudaSuccess);

    char name[160];
    int len = snprintf(name, sizeof name, "d%d heads %d/%d bs%d scale %.3g seqs", d, c->n_head, c->n_kv, bs,
                       (double)scale);
    for (int s = 0; s < ns && len < (int)sizeof name - 24; s++)
        len += snprintf(name + len, sizeof name - (size_t)len, " %d/%d", c->seqs[s].q_len, kv_len[s]);
    size_t bad = 0;
    float max_diff = 0;
    for (size_t i = 0; i < q_n; i++) {
        float g = cs_bf16_to_f32(got[i]), diff = fabsf(g - ref[i]);
        if (diff > max_diff || isnan(diff)) max_diff = isnan(diff) ? INFINITY : diff;
        if (diff <= ATOL + RTOL * fabsf(ref[i])) continue; // NaN fails here
        if (bad++ < 5) {
            size_t t = i / ((size_t)c->n_head * d), h = i / d % c->n_head, e = i % d;
            fprintf(stderr, "  %s: token %zu head %zu dim %zu: got %g want %g\n", name, t, h, e, (double)g,
                    (double)ref[i]);
        }
    }
    printf("%-90s max diff %.2e\n", name, (double)max_diff);
    TEST_CONDF(bad == 0, "%s: %zu of %zu outside %g + %g * |ref|", name, bad, q_n, (double)ATOL, (double)RTOL);

    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout);
    cudaFree(dqs), cudaFree(dkl), cudaFree(dbs), cudaFree(dbt);
    free(perm), free(kh), free(vh), free(qh), free(got), free(kf), free(vf), free(qf), free(ref), free(scratch);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("no CUDA device: skipped");
        return 77;
    }
    cs_pool *pool = cs_pool_init(0);
    CS_ASSERT(pool);
    // q_len 1, 2, 15, 16, 17, 63, 64, 65, 200, 1000 (and tile edges 127/128/129); block sizes
    // 1, 3, 16, 17, 64; GQA 1, 3, 4, 8; scale 1 makes the softmax peaky, exercising the rescale.
    static const case_spec cases[] = {
        {128, 8, 8, 16, 0, 0, 5, {{1000, 1000}, {17, 17}, {1, 300}, {65, 200}, {200, 1100}}},
        {64, 8, 2, 3, 0, 0, 6, {{15, 15}, {63, 100}, {64, 64}, {1, 1}, {2, 50}, {200, 333}}},
        {128, 6, 2, 1, 0, 100, 4, {{16, 16}, {65, 65}, {1, 77}, {130, 500}}},
        {64, 16, 2, 64, 0, 0, 3, {{1000, 1500}, {16, 80}, {1, 2}}},
        {128, 32, 8, 64, 0, 0, 5, {{63, 63}, {64, 129}, {1, 1000}, {200, 200}, {2, 2}}},
        {128, 8, 1, 17, 1.0f, 0, 4, {{129, 129}, {2, 2}, {127, 300}, {128, 128}}},
        {64, 4, 4, 16, 1.0f, 0, 2, {{256, 256}, {100, 1000}}},
        {64, 12, 4, 1, 0, 0, 3, {{17, 40}, {63, 63}, {1, 5}}},
        {128, 4, 4, 16, 0, 0, 1, {{1, 1}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], pool);
    cs_pool_free(pool);
    return TEST_REPORT();
}
#endif
