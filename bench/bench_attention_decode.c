// Paged decode attention on the GPU at Llama-3-8B heads (32 q / 8 kv, head_dim 128, block 16,
// a shuffled block permutation): validates small cases against the CPU reference, then times
// cs_cuda_attn_decode alone with CUDA events (median of 50 after 5 warm-ups, L2 flushed and
// swept before every run, see flush_l2) and prints the K/V bytes read per second, as a share of the measured copy rate
// (bytes read + written), and the KV split the launcher chose. bench/sdpa_decode.py prints
// torch SDPA on the same shapes in the same format. A second table times the kernel as a
// decode step runs it: once per layer, each layer's K/V elsewhere in memory, back to back in
// one CUDA graph, so that the launch latency a lone timed launch pays is what a step pays.
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_attention_decode: built without CUDA, nothing to measure");
    return 0;
}
#else
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

#define N_RUNS 50
#define N_WARM 5
#define BLOCK 16

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static uint16_t rand_bf16(void) { return cs_f32_to_bf16((float)next_u32() * (2.0f / 4294967296.0f) - 1.0f); }

// One batch on the device: B sequences of L positions over a shuffled permutation of blocks.
typedef struct dev_batch {
    int B, L, n_head, n_kv, hd;
    int32_t *h_table;           // host copy of the block table
    uint16_t *q, *k, *v, *out;  // device
    int32_t *len, *qs, *bts, *bt;
    void *ws;
    size_t ws_bytes, cache_elems;
    cs_attn_batch b;
} dev_batch;

static void *dmalloc(size_t n) {
    void *p = NULL;
    CS_ASSERT(cudaMalloc(&p, n ? n : 16) == cudaSuccess);
    return p;
}

// Random bf16 in [-1, 1) everywhere: a 32 MiB host pattern copied over the buffer.
static void fill_random(uint16_t *d, size_t n, const uint16_t *pattern, size_t pat_n) {
    for (size_t i = 0; i < n; i += pat_n) {
        size_t m = n - i < pat_n ? n - i : pat_n;
        CS_ASSERT(cudaMemcpy(d + i, pattern, m * 2, cudaMemcpyHostToDevice) == cudaSuccess);
    }
}

static void batch_init(dev_batch *d, int B, int L, int n_head, int n_kv, int hd, const uint16_t *pattern,
                       size_t pat_n) {
    memset(d, 0, sizeof *d);
    d->B = B, d->L = L, d->n_head = n_head, d->n_kv = n_kv, d->hd = hd;
    const int bps = (L + BLOCK - 1) / BLOCK, n_blocks = B * bps;
    int32_t *len = malloc((size_t)B * 4), *qs = malloc((size_t)(B + 1) * 4), *bts = malloc((size_t)(B + 1) * 4);
    d->h_table = malloc((size_t)n_blocks * 4);
    for (int i = 0; i < n_blocks; i++) d->h_table[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(next_u32() % (uint32_t)(i + 1)), t = d->h_table[i];
        d->h_table[i] = d->h_table[j];
        d->h_table[j] = t;
    }
    for (int s = 0; s <= B; s++) {
        if (s < B) len[s] = L;
        qs[s] = s;
        bts[s] = s * bps;
    }
    d->cache_elems = (size_t)n_blocks * BLOCK * n_kv * hd;
    const size_t q_elems = (size_t)B * n_head * hd;
    d->q = dmalloc(q_elems * 2);
    d->out = dmalloc(q_elems * 2);
    d->k = dmalloc(d->cache_elems * 2);
    d->v = dmalloc(d->cache_elems * 2);
    fill_random(d->q, q_elems, pattern, pat_n);
    fill_random(d->k, d->cache_elems, pattern, pat_n);
    fill_random(d->v, d->cache_elems, pattern + 1, pat_n - 1); // shifted: V differs from K
    d->len = dmalloc((size_t)B * 4);
    d->qs = dmalloc((size_t)(B + 1) * 4);
    d->bts = dmalloc((size_t)(B + 1) * 4);
    d->bt = dmalloc((size_t)n_blocks * 4);
    cudaMemcpy(d->len, len, (size_t)B * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d->qs, qs, (size_t)(B + 1) * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d->bts, bts, (size_t)(B + 1) * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d->bt, d->h_table, (size_t)n_blocks * 4, cudaMemcpyHostToDevice);
    d->ws_bytes = cs_cuda_attn_decode_workspace(B, n_head, hd, L);
    d->ws = dmalloc(d->ws_bytes);
    d->b = (cs_attn_batch){B, d->qs, d->len, d->bts, d->bt, BLOCK};
    free(len);
    free(qs);
    free(bts);
}

static void batch_free(dev_batch *d) {
    void *p[] = {d->q, d->out, d->k, d->v, d->len, d->qs, d->bts, d->bt, d->ws};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cudaFree(p[i]);
    free(d->h_table);
}

static void launch_on(dev_batch *d, cudaStream_t st) {
    cs_cuda_attn_decode(d->out, d->q, d->k, d->v, &d->b, d->L, d->n_head, d->n_kv, d->hd,
                        1.0f / sqrtf((float)d->hd), d->ws, d->ws_bytes, st);
}
static void launch(dev_batch *d) { launch_on(d, NULL); }

// Runs a small batch and compares every output with cs_cpu_attention on the same bf16 values;
// exits 1 on a mismatch (nothing is timed then).
static void validate(int B, int L, int n_head, int n_kv, int hd, const uint16_t *pattern, size_t pat_n) {
    dev_batch d;
    batch_init(&d, B, L, n_head, n_kv, hd, pattern, pat_n);
    const size_t q_elems = (size_t)B * n_head * hd, n_blocks = (size_t)B * ((L + BLOCK - 1) / BLOCK);
    uint16_t *hq = malloc(q_elems * 2), *hk = malloc(d.cache_elems * 2), *hv = malloc(d.cache_elems * 2);
    uint16_t *got = malloc(q_elems * 2);
    cudaMemcpy(hq, d.q, q_elems * 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(hk, d.k, d.cache_elems * 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(hv, d.v, d.cache_elems * 2, cudaMemcpyDeviceToHost);
    float *qf = malloc(q_elems * 4), *kf = malloc(d.cache_elems * 4), *vf = malloc(d.cache_elems * 4);
    float *ref = malloc(q_elems * 4);
    for (size_t i = 0; i < q_elems; i++) qf[i] = cs_bf16_to_f32(hq[i]);
    for (size_t i = 0; i < d.cache_elems; i++) {
        kf[i] = cs_bf16_to_f32(hk[i]);
        vf[i] = cs_bf16_to_f32(hv[i]);
    }
    int32_t *len = malloc((size_t)B * 4), *qs = malloc((size_t)(B + 1) * 4), *bts = malloc((size_t)(B + 1) * 4);
    for (int s = 0; s <= B; s++) {
        if (s < B) len[s] = L;
        qs[s] = s;
        bts[s] = s * (int)(n_blocks / (size_t)B);
    }
    cs_pool *pool = cs_pool_init(0);
    float *scratch = malloc(cs_cpu_attention_scratch(n_head, cs_pool_threads(pool)));
    cs_attn_batch hb = {B, qs, len, bts, d.h_table, BLOCK};
    const float scale = 1.0f / sqrtf((float)hd);
    cs_cpu_attention(ref, qf, kf, vf, &hb, n_head, n_kv, hd, scale, scratch, pool);
    cudaMemset(d.out, 0xff, q_elems * 2);
    launch(&d);
    CS_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    cudaMemcpy(got, d.out, q_elems * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < q_elems; i++) {
        float g = cs_bf16_to_f32(got[i]);
        if (fabsf(g - ref[i]) <= 1e-3f + 1e-2f * fabsf(ref[i])) continue;
        fprintf(stderr, "bench_attention_decode: B=%d L=%d %d/%d d%d: output %zu is %g, reference %g: not timing\n",
                B, L, n_head, n_kv, hd, i, (double)g, (double)ref[i]);
        exit(1);
    }
    cs_pool_free(pool);
    void *h[] = {hq, hk, hv, got, qf, kf, vf, ref, len, qs, bts, scratch};
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) free(h[i]);
    batch_free(&d);
}

// bench_flush_l2 evicts L2 by writing 256 MB, which leaves up to 60 MB of dirty lines whose
// write-back would land inside the next timed kernel (doubling the DRAM traffic of the 32 MiB
// B=1 L=8192 case). So a read-only sweep follows it: this kernel on a separate 256 MiB batch,
// which leaves L2 holding clean lines of unrelated data, as after a real decode step's GEMMs.
static dev_batch sweeper;

static void flush_l2(int sweep) {
    bench_flush_l2();
    if (sweep) launch(&sweeper);
}

// Median of N_RUNS timed calls of run(ctx, st) after N_WARM, L2 flushed (and swept when
// sweep) before each.
static float median_ms(int sweep, void (*run)(void *ctx, cudaStream_t st), void *ctx, cudaStream_t st) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float ms[N_RUNS];
    for (int r = 0; r < N_WARM + N_RUNS; r++) {
        flush_l2(sweep);
        CS_ASSERT(cudaDeviceSynchronize() == cudaSuccess); // st may not wait for the legacy stream
        cudaEventRecord(e0, st);
        run(ctx, st);
        cudaEventRecord(e1, st);
        CS_ASSERT(cudaEventSynchronize(e1) == cudaSuccess);
        if (r >= N_WARM) cudaEventElapsedTime(&ms[r - N_WARM], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return bench_median_ms(ms, N_RUNS);
}

static void run_batch(void *ctx, cudaStream_t st) { launch_on(ctx, st); }
static void run_graph(void *ctx, cudaStream_t st) { CS_ASSERT(cudaGraphLaunch(*(cudaGraphExec_t *)ctx, st) == cudaSuccess); }

static void bench_one(int B, int L, int n_head, int n_kv, int hd, int sweep, double ceiling,
                      const uint16_t *pattern, size_t pat_n) {
    dev_batch d;
    batch_init(&d, B, L, n_head, n_kv, hd, pattern, pat_n);
    const float m = median_ms(sweep, run_batch, &d, NULL);
    const double bytes = 2.0 * B * (double)L * n_kv * hd * 2; // K and V, bf16
    const double gbs = bytes / (m * 1e-3) / 1e9;
    char shape[80];
    snprintf(shape, sizeof shape, "B=%d L=%d %d/%d d%d%s", B, L, n_head, n_kv, hd, sweep ? "" : " (no sweep)");
    printf("| cs_cuda_attn_decode | %-24s | %8.1f | %7.0f | %5.1f%% | %3d |\n", shape, m * 1e3, gbs,
           100.0 * gbs * 1e9 / ceiling, cs_cuda_attn_decode_splits(B, n_head, n_kv, hd, L));
    batch_free(&d);
}

// The shape once per layer, as in a decode step: up to 32 layers (at most 2 GiB of K/V in
// all), each with its own K/V, launched back to back in one captured graph; time per layer.
static void bench_layers(int B, int L, int n_head, int n_kv, int hd, double ceiling, const uint16_t *pattern,
                         size_t pat_n) {
    const double bytes = 2.0 * B * (double)L * n_kv * hd * 2; // one layer's K and V
    int n_layers = (int)((double)(2u << 30) / bytes);
    n_layers = n_layers > 32 ? 32 : n_layers < 2 ? 2 : n_layers;
    dev_batch *d = malloc(sizeof *d * (size_t)n_layers);
    for (int l = 0; l < n_layers; l++) batch_init(&d[l], B, L, n_head, n_kv, hd, pattern, pat_n);
    cudaStream_t st;
    CS_ASSERT(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess);
    for (int l = 0; l < n_layers; l++) launch_on(&d[l], st); // warm: lazy module loading
    CS_ASSERT(cudaStreamSynchronize(st) == cudaSuccess);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CS_ASSERT(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    for (int l = 0; l < n_layers; l++) launch_on(&d[l], st);
    CS_ASSERT(cudaStreamEndCapture(st, &graph) == cudaSuccess);
    CS_ASSERT(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    const float m = median_ms(1, run_graph, &exec, st) / (float)n_layers;
    const double gbs = bytes / (m * 1e-3) / 1e9;
    char shape[80];
    snprintf(shape, sizeof shape, "B=%d L=%d %d/%d d%d", B, L, n_head, n_kv, hd);
    printf("| cs_cuda_attn_decode x%d layers | %-20s | %8.1f | %7.0f | %5.1f%% | %3d |\n", n_layers, shape, m * 1e3, gbs,
           100.0 * gbs * 1e9 / ceiling, cs_cuda_attn_decode_splits(B, n_head, n_kv, hd, L));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(st);
    for (int l = 0; l < n_layers; l++) batch_free(&d[l]);
    free(d);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("bench_attention_decode: no CUDA device");
        return 0;
    }
    struct cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    const double ceiling = bench_copy_rate();
    printf("device: %s; device-to-device copy %.2f TB/s (read + write)\n\n", p.name, ceiling / 1e12);
    const size_t pat_n = (size_t)16 << 20; // 32 MiB of random bf16
    uint16_t *pattern = malloc(pat_n * 2);
    for (size_t i = 0; i < pat_n; i++) pattern[i] = rand_bf16();

    validate(3, 2049, 32, 8, 128, pattern, pat_n); // split: merge path
    validate(300, 100, 32, 8, 128, pattern, pat_n); // no split: direct path
    validate(5, 1000, 9, 3, 64, pattern, pat_n);

    batch_init(&sweeper, 32, 2048, 32, 8, 128, pattern, pat_n);
    printf("| kernel | shape | us | GB/s | %% of copy | splits |\n|---|---|---|---|---|---|\n");
    const int shapes[][2] = {{1, 8192}, {64, 2048}, {256, 1024}, {1, 32768}, {16, 4096}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        bench_one(shapes[i][0], shapes[i][1], 32, 8, 128, 1, ceiling, pattern, pat_n);
    bench_one(64, 2048, 9, 3, 64, 1, ceiling, pattern, pat_n); // SmolLM2 heads, for reference
    bench_one(1, 8192, 32, 8, 128, 0, ceiling, pattern, pat_n); // what the dirty-L2 flush alone costs
    printf("\nAs a decode step runs it (per layer, layers back to back in one CUDA graph):\n\n");
    printf("| kernel | shape | us per layer | GB/s | %% of copy | splits |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        bench_layers(shapes[i][0], shapes[i][1], 32, 8, 128, ceiling, pattern, pat_n);
    batch_free(&sweeper);
    free(pattern);
    return 0;
}
#endif
