// The CUDA row kernels (embed, residual add + RMSNorm, bias + RoPE + KV append, SwiGLU) at
// Llama-3-8B shapes (dim 4096, ffn 14336, 32/8 heads of 128) for 1, 64, 256 and 4096 tokens.
// Each is validated against its CPU reference on sampled rows first, then timed with CUDA
// events (median of 50 runs, L2 flushed before each); prints us and GB/s (bytes read +
// written) as a share of the measured device-to-device copy rate. At decode sizes these
// kernels are launch-bound: the us column is the number that matters there.
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_gpu_kernels: built without CUDA, nothing to measure");
    return 0;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/rng.h"
#include "engine/model.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"
#include "bench_cuda_util.h"

#define N_RUNS 50
#define N_WARM 5

enum { DIM = 4096, FFN = 14336, N_HEAD = 32, N_KV = 8, HEAD_DIM = 128, VOCAB = 32768, MAX_POS = 8192,
       N_SLOTS = 8192 };

static double g_ceiling; // bytes per second

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() >> 8) / 16777216.0f; }
static void fill_bf16(uint16_t *h, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) h[i] = cs_f32_to_bf16(frand(lo, hi));
}
static void *dev_copy(const void *h, size_t n) {
    void *p;
    CS_ASSERT(cudaMalloc(&p, n) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice) == cudaSuccess);
    return p;
}
static void *dev_alloc(size_t n) {
    void *p;
    CS_ASSERT(cudaMalloc(&p, n) == cudaSuccess);
    return p;
}
static void to_host(void *h, const void *d, size_t n) {
    CS_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    CS_ASSERT(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost) == cudaSuccess);
}

// Rows checked against the reference: the first, second, middle and last.
static int sample_rows(int n, int *rows) {
    int k = 0, cand[4] = {0, 1, n / 2, n - 1};
    for (int i = 0; i < 4; i++) {
        int dup = cand[i] >= n;
        for (int j = 0; j < k; j++) dup |= rows[j] == cand[i];
        if (!dup) rows[k++] = cand[i];
    }
    return k;
}

// got (n) bf16 within one bf16 ulp (+1e-6) of ref (n) fp32, or the program stops.
static void validate_bf16(const char *what, const uint16_t *got, const float *ref, int n) {
    for (int i = 0; i < n; i++) {
        uint16_t rb = cs_f32_to_bf16(ref[i]);
        float g = cs_bf16_to_f32(got[i]), r = cs_bf16_to_f32(rb);
        int e = (rb >> 7) & 0xff;
        float ulp = ldexpf(1.0f, (e ? e : 1) - 134);
        if (isfinite(g) && fabsf(g - r) <= ulp + 1e-6f) continue;
        fprintf(stderr, "bench_gpu_kernels: %s [%d]: got %g, reference %g: not timing it\n", what, i, (double)g,
                (double)r);
        exit(1);
    }
}

typedef void (*launch_fn)(void *ctx);

// Median time in ms of fn over N_RUNS runs after N_WARM, L2 flushed before each run.
static float time_ms(launch_fn fn, void *ctx) {
    cudaEvent_t e0, e1;
    CS_ASSERT(cudaEventCreate(&e0) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess);
    float ms[N_RUNS];
    for (int r = 0; r < N_RUNS + N_WARM; r++) {
        bench_flush_l2();
        cudaEventRecord(e0, 0);
        fn(ctx);
        cudaEventRecord(e1, 0);
        CS_ASSERT(cudaEventSynchronize(e1) == cudaSuccess);
        if (r >= N_WARM) cudaEventElapsedTime(&ms[r - N_WARM], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return bench_median_ms(ms, N_RUNS);
}

static void report(const char *kernel, int n, const char *shape, float ms, double bytes) {
    double gbs = bytes / (ms * 1e-3) / 1e9;
    printf("| %-22s | %4d x %-12s | %8.1f | %7.0f | %5.1f%% |\n", kernel, n, shape, ms * 1e3, gbs,
           100.0 * gbs * 1e9 / g_ceiling);
}

// ---- embed -----------------------------------------------------------------------------

typedef struct embed_ctx {
    float *x;
    const uint16_t *table;
    const int32_t *ids;
    int n;
} embed_ctx;
static void embed_launch(void *p) {
    embed_ctx *c = p;
    cs_cuda_embed(c->x, c->table, c->ids, NULL, VOCAB, c->n, DIM, NULL);
}

static void bench_embed(int n, const uint16_t *table, const uint16_t *d_table) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(next_u32() % VOCAB);
    int32_t *d_ids = dev_copy(ids, (size_t)n * sizeof *ids);
    float *d_x = dev_alloc((size_t)n * DIM * sizeof(float));
    embed_ctx c = {d_x, d_table, d_ids, n};
    embed_launch(&c);
    float *row = malloc(DIM * sizeof(float));
    int rows[4], k = sample_rows(n, rows);
    for (int s = 0; s < k; s++) {
        to_host(row, d_x + (size_t)rows[s] * DIM, DIM * sizeof(float));
        for (int i = 0; i < DIM; i++)
            if (row[i] != cs_bf16_to_f32(table[(size_t)ids[rows[s]] * DIM + i])) {
                fprintf(stderr, "bench_gpu_kernels: embed row %d differs: not timing it\n", rows[s]);
                exit(1);
            }
    }
    float ms = time_ms(embed_launch, &c);
    report("embed bf16 -> fp32", n, "4096", ms, (double)n * DIM * (2 + 4) + n * 4.0);
    cudaFree(d_ids); cudaFree(d_x);
    free(ids); free(row);
}

// ---- residual add + rmsnorm ----------------------------------------------------------------

typedef struct norm_ctx {
    uint16_t *out;
    float *x;
    const uint16_t *y;
    const float *w;
    int n;
} norm_ctx;
static void norm_launch(void *p) {
    norm_ctx *c = p;
    cs_cuda_rmsnorm(c->out, c->x, c->y, c->w, NULL, c->n, DIM, 1e-5f, NULL);
}

static void bench_rmsnorm(int n) {
    size_t xn = (size_t)n * DIM;
    float *x = malloc(xn * sizeof(float)), *w = malloc(DIM * sizeof(float));
    uint16_t *y = malloc(xn * 2);
    for (size_t i = 0; i < xn; i++) x[i] = frand(-2.0f, 2.0f);
    fill_bf16(y, xn, -1.0f, 1.0f);
    for (int i = 0; i < DIM; i++) w[i] = frand(0.5f, 1.5f);
    float *d_x = dev_copy(x, xn * sizeof(float)), *d_w = dev_copy(w, DIM * sizeof(float));
    uint16_t *d_y = dev_copy(y, xn * 2), *d_out = dev_alloc(xn * 2);
    norm_ctx c = {d_out, d_x, d_y, d_w, n};
    norm_launch(&c);
    float *xr = malloc(DIM * sizeof(float)), *ref = malloc(DIM * sizeof(float)), *xg = malloc(DIM * sizeof(float));
    uint16_t *got = malloc(DIM * 2);
    int rows[4], k = sample_rows(n, rows);
    for (int s = 0; s < k; s++) {
        size_t off = (size_t)rows[s] * DIM;
        for (int i = 0; i < DIM; i++) xr[i] = x[off + i] + cs_bf16_to_f32(y[off + i]);
        to_host(xg, d_x + off, DIM * sizeof(float));
        if (memcmp(xg, xr, DIM * sizeof(float)) != 0) {
            fprintf(stderr, "bench_gpu_kernels: rmsnorm residual row %d differs: not timing it\n", rows[s]);
            exit(1);
        }
        cs_cpu_rmsnorm(ref, xr, w, 1, DIM, 1e-5f);
        to_host(got, d_out + off, DIM * 2);
        validate_bf16("rmsnorm", got, ref, DIM);
    }
    // each timed run adds y into x again: values drift, the work does not
    float ms = time_ms(norm_launch, &c);
    report("add + rmsnorm", n, "4096", ms, (double)xn * (4 + 2 + 4 + 2) + DIM * 4.0);
    cudaFree(d_x); cudaFree(d_w); cudaFree(d_y); cudaFree(d_out);
    free(x); free(w); free(y); free(xr); free(ref); free(xg); free(got);
}

// ---- bias + rope + kv write ----------------------------------------------------------------

typedef struct rope_ctx {
    uint16_t *q, *kc, *vc;
    const uint16_t *qkv;
    const int32_t *pos, *slots;
    const float *cs;
    int n, neox;
} rope_ctx;
static void rope_launch(void *p) {
    rope_ctx *c = p;
    cs_cuda_rope_kv_write(c->q, c->kc, c->vc, c->qkv, NULL, c->pos, c->slots, c->cs, c->n, N_HEAD, N_KV, HEAD_DIM,
                          HEAD_DIM, c->neox, NULL);
}

static void bench_rope(int n, int neox, const float *cos_sin, const float *d_cs, uint16_t *d_kc, uint16_t *d_vc) {
    const int width = (N_HEAD + 2 * N_KV) * HEAD_DIM, q_dim = N_HEAD * HEAD_DIM, kv_dim = N_KV * HEAD_DIM;
    size_t qkv_n = (size_t)n * width;
    uint16_t *qkv = malloc(qkv_n * 2);
    fill_bf16(qkv, qkv_n, -3.0f, 3.0f);
    int32_t *pos = malloc((size_t)n * sizeof *pos), *perm = malloc(N_SLOTS * sizeof *perm);
    for (int i = 0; i < n; i++) pos[i] = (int32_t)(next_u32() % MAX_POS);
    for (int i = 0; i < N_SLOTS; i++) perm[i] = i;
    for (int i = N_SLOTS - 1; i > 0; i--) {
        int j = (int)(next_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    uint16_t *d_qkv = dev_copy(qkv, qkv_n * 2), *d_q = dev_alloc((size_t)n * q_dim * 2);
    int32_t *d_pos = dev_copy(pos, (size_t)n * sizeof *pos), *d_slots = dev_copy(perm, (size_t)n * sizeof *perm);
    rope_ctx c = {d_q, d_kc, d_vc, d_qkv, d_pos, d_slots, d_cs, n, neox};
    rope_launch(&c);
    float *f = malloc((size_t)width * sizeof(float));
    uint16_t *got = malloc((size_t)q_dim * 2);
    int rows[4], k = sample_rows(n, rows);
    for (int s = 0; s < k; s++) {
        int t = rows[s];
        for (int i = 0; i < width; i++) f[i] = cs_bf16_to_f32(qkv[(size_t)t * width + i]);
        cs_cpu_rope(f, &pos[t], 1, N_HEAD + N_KV, HEAD_DIM, HEAD_DIM, cos_sin, neox); // q and k heads
        to_host(got, d_q + (size_t)t * q_dim, (size_t)q_dim * 2);
        validate_bf16("rope q", got, f, q_dim);
        to_host(got, d_kc + (size_t)perm[t] * kv_dim, (size_t)kv_dim * 2);
        validate_bf16("rope k", got, f + q_dim, kv_dim);
        to_host(got, d_vc + (size_t)perm[t] * kv_dim, (size_t)kv_dim * 2);
        validate_bf16("rope v", got, f + q_dim + kv_dim, kv_dim);
    }
    float ms = time_ms(rope_launch, &c);
    // qkv in, q/k/v out, the cos/sin of each token, pos and slot
    report(neox ? "rope (neox) + kv write" : "rope (adj.) + kv write", n, "32/8 x 128", ms, (double)n * (width * 2.0 * 2 + HEAD_DIM * 4.0 + 8));
    cudaFree(d_qkv); cudaFree(d_q); cudaFree(d_pos); cudaFree(d_slots);
    free(qkv); free(pos); free(perm); free(f); free(got);
}

// ---- swiglu ----------------------------------------------------------------------------

typedef struct swiglu_ctx {
    uint16_t *out;
    const uint16_t *gu;
    int n;
} swiglu_ctx;
static void swiglu_launch(void *p) {
    swiglu_ctx *c = p;
    cs_cuda_swiglu(c->out, c->gu, c->n, FFN, NULL);
}

static void bench_swiglu(int n) {
    size_t in_n = (size_t)n * 2 * FFN, on = (size_t)n * FFN;
    uint16_t *gu = malloc(in_n * 2), *got = malloc(FFN * 2);
    fill_bf16(gu, in_n, -4.0f, 4.0f);
    uint16_t *d_gu = dev_copy(gu, in_n * 2), *d_out = dev_alloc(on * 2);
    swiglu_ctx c = {d_out, d_gu, n};
    swiglu_launch(&c);
    float *g = malloc(FFN * sizeof(float)), *u = malloc(FFN * sizeof(float)), *ref = malloc(FFN * sizeof(float));
    int rows[4], k = sample_rows(n, rows);
    for (int s = 0; s < k; s++) {
        for (int i = 0; i < FFN; i++) {
            g[i] = cs_bf16_to_f32(gu[(size_t)rows[s] * 2 * FFN + i]);
            u[i] = cs_bf16_to_f32(gu[(size_t)rows[s] * 2 * FFN + FFN + i]);
        }
        cs_cpu_swiglu(ref, g, u, FFN);
        to_host(got, d_out + (size_t)rows[s] * FFN, FFN * 2);
        validate_bf16("swiglu", got, ref, FFN);
    }
    float ms = time_ms(swiglu_launch, &c);
    report("swiglu", n, "14336", ms, (double)on * (4 + 2));
    cudaFree(d_gu); cudaFree(d_out);
    free(gu); free(got); free(g); free(u); free(ref);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("bench_gpu_kernels: no CUDA device");
        return 0;
    }
    struct cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    g_ceiling = bench_copy_rate();
    printf("device: %s; device-to-device copy %.2f TB/s (read + write)\n\n", p.name, g_ceiling / 1e12);
    printf("| kernel | tokens x shape | us | GB/s | %% of copy |\n|---|---|---|---|---|\n");

    // shared inputs: the embedding table (random rows of 32768 x 4096), the RoPE table, caches
    size_t tn = (size_t)VOCAB * DIM, cache_n = (size_t)N_SLOTS * N_KV * HEAD_DIM;
    uint16_t *table = malloc(tn * 2);
    fill_bf16(table, tn, -1.0f, 1.0f);
    uint16_t *d_table = dev_copy(table, tn * 2);
    cs_model_config cfg = {0};
    cfg.rope_theta = 500000.0f;
    cfg.rope_dim = HEAD_DIM;
    float *cos_sin = malloc((size_t)MAX_POS * HEAD_DIM * sizeof(float));
    cs_rope_table(&cfg, NULL, MAX_POS, cos_sin);
    float *d_cs = dev_copy(cos_sin, (size_t)MAX_POS * HEAD_DIM * sizeof(float));
    uint16_t *d_kc = dev_alloc(cache_n * 2), *d_vc = dev_alloc(cache_n * 2);

    const int ns[] = {1, 64, 256, 4096};
    for (int i = 0; i < 4; i++) bench_embed(ns[i], table, d_table);
    for (int i = 0; i < 4; i++) bench_rmsnorm(ns[i]);
    for (int neox = 1; neox >= 0; neox--)
        for (int i = 0; i < 4; i++) bench_rope(ns[i], neox, cos_sin, d_cs, d_kc, d_vc);
    for (int i = 0; i < 4; i++) bench_swiglu(ns[i]);

    cudaFree(d_table); cudaFree(d_cs); cudaFree(d_kc); cudaFree(d_vc);
    free(table); free(cos_sin);
    return 0;
}
#endif
