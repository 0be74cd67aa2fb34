// Paged causal prefill attention on the GPU at Llama-3-8B head shapes (32 query / 8 KV heads,
// head_dim 128, block size 16, physical blocks shuffled): validates a small ragged batch
// against the CPU reference first, measures the cuBLAS bf16 GEMM rate (8192^3, fp32 compute)
// as the ceiling in the same run, then times each shape with CUDA events (median) and prints
// TFLOP/s, causal FLOPs = 4 * n_head * head_dim * (visible (query, key) pairs), and the share
// of the GEMM rate. bench/sdpa_prefill.py prints torch SDPA on the same shapes.
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_attention_prefill: built without CUDA, nothing to measure");
    return 0;
}
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/rng.h"
#include "common/thread_pool.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"
#include "bench_cuda_util.h"

#define N_HEAD 32
#define N_KV 8
#define HEAD_DIM 128
#define BLOCK 16

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static uint16_t rand_bf16(void) { return cs_f32_to_bf16((float)next_u32() / 4294967296.0f * 2.0f - 1.0f); }

// A ragged batch on the device: q, KV caches and block tables, random values, shuffled blocks.
typedef struct batch {
    int n_seqs, n_tok, max_q, max_kv;
    int32_t *q_start, *kv_len, *bt_start, *table; // host
    uint16_t *q, *k, *v;                          // host, bf16 bits
    size_t q_n, cache_n;
    cs_attn_batch dev;                            // device pointers
    uint16_t *dq, *dk, *dv, *dout;
    double pairs;                                 // visible (query, key) pairs
} batch;

static void *dev_copy(const void *h, size_t n) {
    void *d;
    CS_ASSERT(cudaMalloc(&d, n) == cudaSuccess);
    if (h) CS_ASSERT(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice) == cudaSuccess);
    return d;
}

static void batch_init(batch *b, int n_seqs, const int *q_len, const int *kv_len) {
    memset(b, 0, sizeof *b);
    b->n_seqs = n_seqs;
    b->q_start = malloc((size_t)(n_seqs + 1) * 4);
    b->kv_len = malloc((size_t)n_seqs * 4);
    b->bt_start = malloc((size_t)(n_seqs + 1) * 4);
    b->q_start[0] = b->bt_start[0] = 0;
    for (int s = 0; s < n_seqs; s++) {
        b->q_start[s + 1] = b->q_start[s] + q_len[s];
        b->kv_len[s] = kv_len[s];
        b->bt_start[s + 1] = b->bt_start[s] + (kv_len[s] + BLOCK - 1) / BLOCK;
        if (q_len[s] > b->max_q) b->max_q = q_len[s];
        if (kv_len[s] > b->max_kv) b->max_kv = kv_len[s];
        b->pairs += (double)q_len[s] * (kv_len[s] - q_len[s]) + (double)q_len[s] * (q_len[s] + 1) / 2;
    }
    int nb = b->bt_start[n_seqs];
    b->table = malloc((size_t)nb * 4);
    for (int i = 0; i < nb; i++) b->table[i] = i;
    for (int i = nb - 1; i > 0; i--) {
        int k = (int)(next_u32() % (uint32_t)(i + 1)), t = b->table[i];
        b->table[i] = b->table[k];
        b->table[k] = t;
    }
    b->n_tok = b->q_start[n_seqs];
    b->q_n = (size_t)b->n_tok * N_HEAD * HEAD_DIM;
    b->cache_n = (size_t)nb * BLOCK * N_KV * HEAD_DIM;
    b->q = malloc(b->q_n * 2);
    b->k = malloc(b->cache_n * 2);
    b->v = malloc(b->cache_n * 2);
    for (size_t i = 0; i < b->q_n; i++) b->q[i] = rand_bf16();
    for (size_t i = 0; i < b->cache_n; i++) {
        b->k[i] = rand_bf16();
        b->v[i] = rand_bf16();
    }
    b->dq = dev_copy(b->q, b->q_n * 2);
    b->dk = dev_copy(b->k, b->cache_n * 2);
    b->dv = dev_copy(b->v, b->cache_n * 2);
    b->dout = dev_copy(NULL, b->q_n * 2);
    b->dev = (cs_attn_batch){n_seqs, dev_copy(b->q_start, (size_t)(n_seqs + 1) * 4),
                             dev_copy(b->kv_len, (size_t)n_seqs * 4),
                             dev_copy(b->bt_start, (size_t)(n_seqs + 1) * 4), dev_copy(b->table, (size_t)nb * 4),
                             BLOCK};
}

static void batch_free(batch *b) {
    cudaFree((void *)b->dev.q_start), cudaFree((void *)b->dev.kv_len);
    cudaFree((void *)b->dev.bt_start), cudaFree((void *)b->dev.block_table);
    cudaFree(b->dq), cudaFree(b->dk), cudaFree(b->dv), cudaFree(b->dout);
    free(b->q_start), free(b->kv_len), free(b->bt_start), free(b->table), free(b->q), free(b->k), free(b->v);
}

static void run(batch *b) {
    cs_cuda_attn_prefill(b->dout, b->dq, b->dk, b->dv, &b->dev, b->max_q, N_HEAD, N_KV, HEAD_DIM,
                         1.0f / sqrtf((float)HEAD_DIM), NULL);
}

// Small ragged batch (prefill, extend, decode) against cs_cpu_attention; exits on a mismatch.
static void validate(void) {
    const int q_len[] = {300, 100, 1, 77}, kv_len[] = {300, 400, 129, 77};
    batch b;
    batch_init(&b, 4, q_len, kv_len);
    float *qf = malloc(b.q_n * 4), *kf = malloc(b.cache_n * 4), *vf = malloc(b.cache_n * 4);
    float *ref = malloc(b.q_n * 4);
    uint16_t *got = malloc(b.q_n * 2);
    for (size_t i = 0; i < b.q_n; i++) qf[i] = cs_bf16_to_f32(b.q[i]);
    for (size_t i = 0; i < b.cache_n; i++) kf[i] = cs_bf16_to_f32(b.k[i]), vf[i] = cs_bf16_to_f32(b.v[i]);
    cs_pool *pool = cs_pool_init(0);
    float *scratch = malloc(cs_cpu_attention_scratch(N_HEAD, cs_pool_threads(pool)));
    cs_attn_batch hb = {b.n_seqs, b.q_start, b.kv_len, b.bt_start, b.table, BLOCK};
    cs_cpu_attention(ref, qf, kf, vf, &hb, N_HEAD, N_KV, HEAD_DIM, 1.0f / sqrtf((float)HEAD_DIM), scratch, pool);
    CS_ASSERT(cudaMemset(b.dout, 0xff, b.q_n * 2) == cudaSuccess);
    run(&b);
    CS_ASSERT(cudaMemcpy(got, b.dout, b.q_n * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
    float max_diff = 0;
    for (size_t i = 0; i < b.q_n; i++) {
        float diff = fabsf(cs_bf16_to_f32(got[i]) - ref[i]);
        if (!(diff <= 2e-2f + 2e-2f * fabsf(ref[i]))) {
            fprintf(stderr, "bench_attention_prefill: element %zu got %g, reference %g: not timing it\n", i,
                    (double)cs_bf16_to_f32(got[i]), (double)ref[i]);
            exit(1);
        }
        if (diff > max_diff) max_diff = diff;
    }
    printf("validated against the CPU reference (4 sequences, 478 tokens): max diff %.2e\n\n", (double)max_diff);
    cs_pool_free(pool);
    free(qf), free(kf), free(vf), free(ref), free(got), free(scratch);
    batch_free(&b);
}

// cuBLAS bf16 GEMM 8192^3 (bf16 out, fp32 compute): FLOP/s, median of 20.
static double gemm_rate(void) {
    const int n = 8192;
    size_t elems = (size_t)n * n;
    uint16_t *h = malloc(elems * 2);
    for (size_t i = 0; i < elems; i++) h[i] = rand_bf16();
    void *a = dev_copy(h, elems * 2), *bm = dev_copy(h, elems * 2), *c = dev_copy(NULL, elems * 2);
    free(h);
    cublasHandle_t handle;
    CS_ASSERT(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS);
    const float alpha = 1.0f, beta = 0.0f;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float ms[20];
    for (int r = 0; r < 23; r++) {
        cudaEventRecord(e0, 0);
        CS_ASSERT(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, bm, CUDA_R_16BF,
                               n, &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
        cudaEventRecord(e1, 0);
        CS_ASSERT(cudaEventSynchronize(e1) == cudaSuccess);
        if (r >= 3) cudaEventElapsedTime(&ms[r - 3], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cublasDestroy(handle);
    cudaFree(a), cudaFree(bm), cudaFree(c);
    return 2.0 * n * (double)n * n / (bench_median_ms(ms, 20) * 1e-3);
}

static void bench_shape(const char *shape, int n_seqs, int len, int n_runs, double gemm) {
    int q_len[8], kv_len[8];
    for (int s = 0; s < n_seqs; s++) q_len[s] = kv_len[s] = len;
    batch b;
    batch_init(&b, n_seqs, q_len, kv_len);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float ms[50];
    CS_ASSERT(n_runs <= 50);
    for (int r = 0; r < n_runs + 3; r++) {
        cudaEventRecord(e0, 0);
        run(&b);
        cudaEventRecord(e1, 0);
        CS_ASSERT(cudaEventSynchronize(e1) == cudaSuccess);
        if (r >= 3) cudaEventElapsedTime(&ms[r - 3], e0, e1);
    }
    float m = bench_median_ms(ms, n_runs);
    double flops = 4.0 * N_HEAD * HEAD_DIM * b.pairs, tfs = flops / (m * 1e-3) / 1e12;
    printf("| cserve prefill | %s | %9.1f | %6.1f | %5.1f%% |\n", shape, m * 1e3, tfs, 100.0 * tfs * 1e12 / gemm);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    batch_free(&b);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("bench_attention_prefill: no CUDA device");
        return 0;
    }
    struct cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    double copy = bench_copy_rate(), gemm = gemm_rate();
    printf("device: %s; device-to-device copy %.2f TB/s; cuBLAS bf16 GEMM 8192^3 %.0f TFLOP/s\n", p.name,
           copy / 1e12, gemm / 1e12);
    validate();
    printf("| kernel | shape (causal, 32/8 heads, d128, block 16) | us | TFLOP/s | %% of GEMM |\n"
           "|---|---|---|---|---|\n");
    bench_shape("1 x 1024", 1, 1024, 50, gemm);
    bench_shape("1 x 4096", 1, 4096, 30, gemm);
    bench_shape("1 x 16384", 1, 16384, 10, gemm);
    bench_shape("8 x 1024", 8, 1024, 30, gemm);
    return 0;
}
#endif
