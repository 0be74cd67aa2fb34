// CUDA paged decode attention (cs_cuda_attn_decode) against the CPU reference, cs_cpu_attention
// run on the same bf16 values converted to fp32. Each case: random physical blocks (a shuffled
// permutation with unreferenced blocks in between), lengths off block and tile multiples,
// block sizes 1/3/16/17/32, GQA ratios 1/3/4/5/7/8/9/16/32, head_dim 64 and 128, batches of 1 to
// 256, one context of 32768. Every slot no sequence owns (block padding, unreferenced blocks)
// holds NaN, so reading one poisons the output. The output is NaN-poisoned before each run,
// and 256 canary bytes after the output and after the workspace must survive. The launch runs
// twice and must give the same bits (no atomics, so it is deterministic).
//
// Tolerance: |got - ref| <= 1e-3 + 1e-2 |ref|. Both sides see identical bf16 inputs and
// accumulate in fp32; the kernel also rounds the softmax weights P to bf16 for its P V
// tensor-core product (the row sums add the same rounded weights, so the output stays a convex
// combination of V with weights off by <= 2^-9 relative). So the expected error is the final
// bf16 rounding (<= 2^-9 |ref|) plus that (~1e-3 at worst, far less on average) plus fp32
// summation-order noise; the H200 run showed max |diff| 2.6e-3 on outputs up to ~1.
// Inputs are uniform in [-1, 1], so plain scores are small (std ~0.33 at scale 1/sqrt(d)) and
// the softmax is flat: dropping one of L positions moves the output by ~1/L, below any bf16
// tolerance for large L. So each sequence also gets "hot" K rows at positions 0, L/2, L-1 and
// one random position: the sign pattern of one query head's q, giving that head a score of
// scale * sum|q| (~5.6 at d=128, ~17 with scale 3/sqrt(d)). A hot row carries
// e^5.6/(L + e^5.6) of its head's weight (6% at L=4097, ~100% at scale 3x), so skipping it, or
// reading the wrong slot for it, moves the output by ~0.04 at L=4097 (over 0.001 + 1% of an
// output that is itself ~0.05): the ends of a sequence, its middle and a random block are all
// checked that way; a dropped stretch of many positions (a tile, a block, a chunk) shows
// through the hot rows inside it or through the plain rows. A wrong softmax (missing scale,
// exp vs exp2, no max subtraction overflowing at scale 3x, a merge that weights chunks wrongly)
// changes those weights by factors, far beyond 1%.
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

#define ATOL 1e-3f
#define RTOL 1e-2f
#define CANARY 256
#define CANARY_BYTE 0xa5
#define BF16_NAN 0x7fc0
#define BF16_ONE 0x3f80
#define BF16_MINUS_ONE 0xbf80

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static uint16_t rand_bf16(void) { // uniform in [-1, 1)
    return cs_f32_to_bf16((float)next_u32() * (2.0f / 4294967296.0f) - 1.0f);
}

static cs_pool *pool;

typedef struct tcase {
    const char *name;
    int head_dim, n_head, n_kv, block_size;
    float scale_mul; // scale = scale_mul / sqrt(head_dim)
    int n_seqs;
    const int *lens; // NULL: random lengths in [1, max_len]
    int max_len;
    int want_split;  // 0: any; 1: the launcher must not split; 2: it must split
} tcase;

static int check_canary(const unsigned char *p) {
    for (int i = 0; i < CANARY; i++)
        if (p[i] != CANARY_BYTE) return 0;
    return 1;
}

static void *dev_upload(const void *h, size_t bytes) {
    void *d = NULL;
    CS_ASSERT(cudaMalloc(&d, bytes ? bytes : 16) == cudaSuccess);
    if (bytes) CS_ASSERT(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice) == cudaSuccess);
    return d;
}

static void run_case(const tcase *c) {
    const int n = c->n_seqs, hd = c->head_dim, n_head = c->n_head, n_kv = c->n_kv, bs = c->block_size;
    const int group = n_head / n_kv, kv_dim = n_kv * hd;
    const float scale = c->scale_mul / sqrtf((float)hd);

    // Lengths, CSR block tables over a shuffled permutation of all blocks.
    int32_t *len = malloc((size_t)n * sizeof *len), *q_start = malloc((size_t)(n + 1) * sizeof *q_start);
    int32_t *bt_start = malloc((size_t)(n + 1) * sizeof *bt_start);
    int max_len = 0;
    bt_start[0] = 0;
    for (int s = 0; s < n; s++) {
        len[s] = c->lens ? c->lens[s] : 1 + (int)(next_u32() % (uint32_t)c->max_len);
        if (len[s] > max_len) max_len = len[s];
        q_start[s] = s;
        bt_start[s + 1] = bt_start[s] + (len[s] + bs - 1) / bs;
    }
    q_start[n] = n;
    const int n_used = bt_start[n], n_blocks = n_used + n_used / 4 + 3;
    int32_t *perm = malloc((size_t)n_blocks * sizeof *perm);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(next_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    const int32_t *block_table = perm; // the first n_used entries

    // Caches: NaN everywhere, random values at every position some sequence owns.
    const size_t n_slots = (size_t)n_blocks * bs, cache_elems = n_slots * kv_dim;
    uint16_t *k = malloc(cache_elems * 2), *v = malloc(cache_elems * 2);
    for (size_t i = 0; i < cache_elems; i++) k[i] = v[i] = BF16_NAN;
    const size_t q_elems = (size_t)n * n_head * hd;
    uint16_t *q = malloc(q_elems * 2);
    for (size_t i = 0; i < q_elems; i++) q[i] = rand_bf16();
    for (int s = 0; s < n; s++)
        for (int p = 0; p < len[s]; p++) {
            size_t slot = (size_t)block_table[bt_start[s] + p / bs] * bs + p % bs;
            for (int e = 0; e < kv_dim; e++) {
                k[slot * kv_dim + e] = rand_bf16();
                v[slot * kv_dim + e] = rand_bf16();
            }
        }
    // Hot rows (see the top of the file): K = sign(q) of head kvh * group + i % group.
    for (int s = 0; s < n; s++)
        for (int kvh = 0; kvh < n_kv; kvh++) {
            const int hot[4] = {0, len[s] / 2, len[s] - 1, (int)(next_u32() % (uint32_t)len[s])};
            for (int i = 0; i < 4; i++) {
                const int p = hot[i], h = kvh * group + i % group;
                size_t slot = (size_t)block_table[bt_start[s] + p / bs] * bs + p % bs;
                for (int d = 0; d < hd; d++) {
                    const uint16_t qv = q[((size_t)s * n_head + h) * hd + d];
                    k[slot * kv_dim + (size_t)kvh * hd + d] = (qv & 0x8000) ? BF16_MINUS_ONE : BF16_ONE;
                }
            }
        }

    // The reference, on the same values in fp32 (NaN slots stay NaN: it must not read them).
    float *kf = malloc(cache_elems * sizeof *kf), *vf = malloc(cache_elems * sizeof *vf);
    float *qf = malloc(q_elems * sizeof *qf), *ref = malloc(q_elems * sizeof *ref);
    for (size_t i = 0; i < cache_elems; i++) {
        kf[i] = cs_bf16_to_f32(k[i]);
        vf[i] = cs_bf16_to_f32(v[i]);
    }
    for (size_t i = 0; i < q_elems; i++) qf[i] = cs_bf16_to_f32(q[i]);
    float *scratch = malloc(cs_cpu_attention_scratch(n_head, cs_pool_threads(pool)));
    const cs_attn_batch hb = {n, q_start, len, bt_start, block_table, bs};
    cs_cpu_attention(ref, qf, kf, vf, &hb, n_head, n_kv, hd, scale, scratch, pool);
    size_t ref_bad = 0;
    for (size_t i = 0; i < q_elems; i++) ref_bad += !isfinite(ref[i]) || fabsf(ref[i]) > 1.0001f;
    TEST_CONDF(ref_bad == 0, "%s: %zu reference outputs outside [-1, 1]", c->name, ref_bad);

    // Device side.
    uint16_t *d_q = dev_upload(q, q_elems * 2), *d_k = dev_upload(k, cache_elems * 2);
    uint16_t *d_v = dev_upload(v, cache_elems * 2);
    int32_t *d_len = dev_upload(len, (size_t)n * 4), *d_qs = dev_upload(q_start, (size_t)(n + 1) * 4);
    int32_t *d_bts = dev_upload(bt_start, (size_t)(n + 1) * 4);
    int32_t *d_bt = dev_upload(block_table, (size_t)n_used * 4);
    const size_t out_bytes = q_elems * 2;
    const size_t ws = cs_cuda_attn_decode_workspace(n, n_head, hd, max_len);
    unsigned char *d_out, *d_ws;
    CS_ASSERT(cudaMalloc((void **)&d_out, out_bytes + CANARY) == cudaSuccess);
    CS_ASSERT(cudaMalloc((void **)&d_ws, ws + CANARY) == cudaSuccess);
    CS_ASSERT(cudaMemset(d_ws, 0xff, ws) == cudaSuccess); // stale partials would be NaN
    CS_ASSERT(cudaMemset(d_ws + ws, CANARY_BYTE, CANARY) == cudaSuccess);
    const cs_attn_batch db = {n, d_qs, d_len, d_bts, d_bt, bs};
    const int splits = cs_cuda_attn_decode_splits(n, n_head, n_kv, hd, max_len);

    unsigned char *got[2];
    for (int r = 0; r < 2; r++) {
        got[r] = malloc(out_bytes + CANARY);
        CS_ASSERT(cudaMemset(d_out, 0xff, out_bytes) == cudaSuccess); // bf16 0xffff is NaN
        CS_ASSERT(cudaMemset(d_out + out_bytes, CANARY_BYTE, CANARY) == cudaSuccess);
        cs_cuda_attn_decode((uint16_t *)d_out, d_q, d_k, d_v, &db, max_len, n_head, n_kv, hd, scale, d_ws, ws, NULL);
        cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
            fprintf(stderr, "%s: CUDA error %s\n", c->name, cudaGetErrorString(e));
            abort();
        }
        CS_ASSERT(cudaMemcpy(got[r], d_out, out_bytes + CANARY, cudaMemcpyDeviceToHost) == cudaSuccess);
    }

    size_t bad = 0;
    float max_diff = 0;
    for (size_t i = 0; i < q_elems; i++) {
        uint16_t bits;
        memcpy(&bits, got[0] + 2 * i, 2);
        const float g = cs_bf16_to_f32(bits), want = ref[i], diff = fabsf(g - want);
        if (!(diff <= max_diff)) max_diff = isnan(diff) ? INFINITY : diff;
        if (diff <= ATOL + RTOL * fabsf(want)) continue;
        if (bad++ < 5) {
            const size_t dim = i % hd, head = i / hd % n_head, seq = i / hd / n_head;
            fprintf(stderr, "%s: seq %zu (len %d) head %zu dim %zu: got %g, want %g\n", c->name, seq,
                    len[seq], head, dim, (double)g, (double)want);
        }
    }
    printf("%-26s B=%-3d max_len=%-5d splits=%-3d workspace=%8zu B  max |diff| %.2e\n", c->name, n, max_len,
           splits, ws, (double)max_diff);
    TEST_CONDF(bad == 0, "%s: %zu of %zu outputs outside %g + %g |ref|", c->name, bad, q_elems, (double)ATOL,
               (double)RTOL);
    TEST_CONDF(memcmp(got[0], got[1], out_bytes) == 0, "%s: two runs gave different bits", c->name);
    TEST_CONDF(check_canary(got[0] + out_bytes), "%s: write past the end of out", c->name);
    unsigned char ws_tail[CANARY];
    CS_ASSERT(cudaMemcpy(ws_tail, d_ws + ws, CANARY, cudaMemcpyDeviceToHost) == cudaSuccess);
    TEST_CONDF(check_canary(ws_tail), "%s: write past the end of the workspace", c->name);
    if (c->want_split == 1) TEST_CONDF(splits == 1, "%s: split %d ways, want none", c->name, splits);
    if (c->want_split == 2) TEST_CONDF(splits > 1, "%s: not split", c->name);
    TEST_CONDF(splits == 1 || ws > 0, "%s: split without workspace", c->name);

    cudaFree(d_q);
    cudaFree(d_k);
    cudaFree(d_v);
    cudaFree(d_len);
    cudaFree(d_qs);
    cudaFree(d_bts);
    cudaFree(d_bt);
    cudaFree(d_out);
    cudaFree(d_ws);
    for (int r = 0; r < 2; r++) free(got[r]);
    free(len);
    free(q_start);
    free(bt_start);
    free(perm);
    free(k);
    free(v);
    free(q);
    free(kf);
    free(vf);
    free(qf);
    free(ref);
    free(scratch);
}

static const int L_MIX[] = {1, 2, 15, 17, 100, 1000, 4097};
static const int L_MHA[] = {1, 2, 17, 100, 1000, 4097};
static const int L_BS1[] = {2, 15, 100, 1000};
static const int L_G8[] = {1, 33, 1000, 4097};
static const int L_G7[] = {3, 64, 65, 1000};
static const int L_G3[] = {100, 4097};
static const int L_G16[] = {1, 1000, 4097};
static const int L_G9[] = {17, 2049};
static const int L_G5[] = {1000, 31};
static const int L_SPLIT[] = {4097, 1, 2, 15, 17, 100, 1000, 2500};
static const int L_8K[] = {8192};
static const int L_32K[] = {32768};

#define N(a) (int)(sizeof(a) / sizeof(a[0]))

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("no CUDA device: skipped");
        return 77;
    }
    pool = cs_pool_init(0);
    CS_ASSERT(pool);
    const tcase cases[] = {
        // name                  hd  heads kv  bs  scale  B              lens     max  split
        {"smollm2 9/3 d64 bs16", 64, 9, 3, 16, 1, N(L_MIX), L_MIX, 0, 0},
        {"llama 32/8 d128 bs16", 128, 32, 8, 16, 1, N(L_MIX), L_MIX, 0, 0},
        {"llama 32/8 d128 x3", 128, 32, 8, 16, 3, N(L_MIX), L_MIX, 0, 0},
        {"mha 8/8 d128 bs3", 128, 8, 8, 3, 1, N(L_MHA), L_MHA, 0, 0},
        {"mha 4/4 d64 bs32 x3", 64, 4, 4, 32, 3, N(L_MIX), L_MIX, 0, 0},
        {"gqa8 16/2 d64 bs1", 64, 16, 2, 1, 1, N(L_BS1), L_BS1, 0, 0},
        {"gqa8 32/4 d128 bs32 x3", 128, 32, 4, 32, 3, N(L_G8), L_G8, 0, 0},
        {"qwen2 14/2 d64 bs17", 64, 14, 2, 17, 1, N(L_G7), L_G7, 0, 0},
        {"gqa3 12/4 d128 bs16 x2", 128, 12, 4, 16, 2, N(L_G3), L_G3, 0, 0},
        {"gqa16 16/1 d64 bs16", 64, 16, 1, 16, 1, N(L_G16), L_G16, 0, 0},
        {"gqa32 32/1 d128 bs16 x2", 128, 32, 1, 16, 2, N(L_G9), L_G9, 0, 0},
        {"gqa9 9/1 d128 bs32", 128, 9, 1, 32, 1, N(L_G9), L_G9, 0, 0},
        {"gqa5 10/2 d128 bs3", 128, 10, 2, 3, 1, N(L_G5), L_G5, 0, 0},
        {"mixed split 32/8 d128", 128, 32, 8, 16, 1, N(L_SPLIT), L_SPLIT, 0, 2},
        {"batch 64 9/3 d64 bs16", 64, 9, 3, 16, 2, 64, NULL, 2000, 0},
        {"batch 256 32/8 d128 bs16", 128, 32, 8, 16, 1, 256, NULL, 400, 1},
        {"one seq 8192 32/8 d128", 128, 32, 8, 16, 1, 1, L_8K, 0, 2},
        {"one seq 32768 32/8 d128", 128, 32, 8, 16, 1, 1, L_32K, 0, 2},
    };
    for (int i = 0; i < N(cases); i++) run_case(&cases[i]);
    cs_pool_free(pool);
    return TEST_REPORT();
}
#endif
