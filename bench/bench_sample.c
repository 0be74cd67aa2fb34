// Token sampling on the GPU (cs_cuda_sample) at Llama-3 (128256) and SmolLM (49152) vocabularies,
// 1 / 64 / 256 rows, greedy and "temperature 0.8, top-k 50, top-p 0.9, 5 logprobs": validates
// against the CPU sampler first, then times with CUDA events (median of 50, L2 flushed before
// each run) and prints the logits read once as GB/s and a share of the measured copy rate,
// beside the wall-clock time of cs_sampler_sample on the CPU for the same rows.
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_sample: built without CUDA, nothing to measure");
    return 0;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/assert.h"
#include "engine/sampler.h"
#include "kernels/cuda/cuda_kernels.h"
#include "bench_cuda_util.h"

#define N_RUNS 50
#define N_CPU_RUNS 3

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rnd_normal(void) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        u[i] = (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
    }
    return sqrt(-2.0 * log(u[0] + 1e-300)) * cos(6.283185307179586 * u[1]);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct cfg {
    const char *name;
    float temperature;
    int top_k;
    float top_p;
    int n_logprobs;
} cfg;

// Raw log_softmax of one logit, in double.
static double ref_logprob(const float *x, int V, int id) {
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < V; i++) m = x[i] > m ? x[i] : m;
    for (int i = 0; i < V; i++) s += exp((double)x[i] - m);
    return ((double)x[id] - m) - log(s);
}

static void bench_one(int V, int rows, cfg c, double ceiling) {
    const size_t n = (size_t)rows * (size_t)V;
    float *h = malloc(n * sizeof(float)), *tmp = malloc((size_t)V * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = (float)(3.0 * rnd_normal());
    cs_cuda_sample_params *p = calloc((size_t)rows, sizeof *p);
    for (int r = 0; r < rows; r++) {
        p[r].temperature = c.temperature;
        p[r].top_k = c.top_k;
        p[r].top_p = c.top_p;
        p[r].repetition_penalty = 1.0f;
        p[r].n_logprobs = c.n_logprobs;
        p[r].seed = 1234 + (uint64_t)r;
        p[r].step = 7;
    }
    float *d_logits, *d_lp, *d_top_lp;
    int32_t *d_ids, *d_top_ids;
    cs_cuda_sample_params *d_p;
    CS_ASSERT(cudaMalloc((void **)&d_logits, n * sizeof(float)) == cudaSuccess);
    CS_ASSERT(cudaMalloc((void **)&d_lp, (size_t)rows * sizeof(float)) == cudaSuccess);
    CS_ASSERT(cudaMalloc((void **)&d_top_lp, (size_t)rows * CS_CUDA_MAX_LOGPROBS * sizeof(float)) == cudaSuccess);
    CS_ASSERT(cudaMalloc((void **)&d_ids, (size_t)rows * sizeof(int32_t)) == cudaSuccess);
    CS_ASSERT(cudaMalloc((void **)&d_top_ids, (size_t)rows * CS_CUDA_MAX_LOGPROBS * sizeof(int32_t)) == cudaSuccess);
    CS_ASSERT(cudaMalloc((void **)&d_p, (size_t)rows * sizeof *p) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(d_logits, h, n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(d_p, p, (size_t)rows * sizeof *p, cudaMemcpyHostToDevice) == cudaSuccess);
    const size_t ws_bytes = cs_cuda_sample_workspace(rows, V);
    void *d_ws = NULL;
    if (ws_bytes) CS_ASSERT(cudaMalloc(&d_ws, ws_bytes) == cudaSuccess);
#define LAUNCH()                                                                                    \
    cs_cuda_sample(d_ids, d_lp, d_top_ids, d_top_lp, d_logits, rows, V, d_p, NULL, NULL, NULL, d_ws, \
                   ws_bytes, NULL)

    // Validate against the CPU sampler before timing (no penalties: the logits stay as they are).
    cudaMemset(d_ids, 0x7f, (size_t)rows * sizeof(int32_t));
    LAUNCH();
    CS_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    int32_t *ids = malloc((size_t)rows * sizeof(int32_t)), *top_ids = malloc((size_t)rows * CS_CUDA_MAX_LOGPROBS * 4);
    float *lp = malloc((size_t)rows * sizeof(float));
    cudaMemcpy(ids, d_ids, (size_t)rows * sizeof(int32_t), cudaMemcpyDeviceToHost);
    cudaMemcpy(lp, d_lp, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(top_ids, d_top_ids, (size_t)rows * CS_CUDA_MAX_LOGPROBS * 4, cudaMemcpyDeviceToHost);
    cs_sampler **s = malloc(sizeof(cs_sampler *) * (size_t)rows);
    for (int r = 0; r < rows; r++) {
        cs_sampling_params sp;
        cs_sampling_params_default(&sp);
        sp.temperature = c.temperature;
        sp.top_k = c.top_k;
        sp.top_p = c.top_p;
        sp.n_logprobs = c.n_logprobs;
        sp.seed = (uint64_t)r;
        sp.has_seed = true;
        s[r] = cs_sampler_init(&sp, V);
        CS_ASSERT(s[r]);
        const float *x = h + (size_t)r * V;
        memcpy(tmp, x, (size_t)V * sizeof(float));
        cs_sample_result res;
        const int32_t want = cs_sampler_sample(s[r], tmp, &res);
        int ok = ids[r] >= 0 && ids[r] < V && fabs(lp[r] - ref_logprob(x, V, ids[r])) <= 1e-4;
        if (c.temperature == 0.0f) ok = ok && ids[r] == want;
        else { // inside the top-k: fewer than k logits are better
            int better = 0;
            for (int i = 0; ok && i < V; i++) better += x[i] > x[ids[r]] || (x[i] == x[ids[r]] && i < ids[r]);
            ok = ok && better < c.top_k;
        }
        for (int j = 0; j < c.n_logprobs && ok; j++) ok = top_ids[(size_t)r * CS_CUDA_MAX_LOGPROBS + j] == res.top[j].id;
        if (!ok) {
            fprintf(stderr, "bench_sample: %s V=%d row %d: gpu id %d lp %g, cpu id %d: not timing it\n", c.name, V, r,
                    ids[r], (double)lp[r], want);
            exit(1);
        }
    }

    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float ms[N_RUNS];
    for (int it = 0; it < N_RUNS + 5; it++) {
        bench_flush_l2();
        cudaEventRecord(e0, 0);
        LAUNCH();
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (it >= 5) cudaEventElapsedTime(&ms[it - 5], e0, e1);
    }
    const float gpu_ms = bench_median_ms(ms, N_RUNS);

    double cpu_s[N_CPU_RUNS];
    for (int it = 0; it < N_CPU_RUNS; it++) {
        const double t0 = now_s();
        for (int r = 0; r < rows; r++) {
            cs_sample_result res;
            memcpy(tmp, h + (size_t)r * V, (size_t)V * sizeof(float));
            (void)cs_sampler_sample(s[r], tmp, c.n_logprobs ? &res : NULL);
        }
        cpu_s[it] = now_s() - t0;
    }
    double cpu = cpu_s[0];
    for (int it = 1; it < N_CPU_RUNS; it++) cpu = cpu_s[it] < cpu ? cpu_s[it] : cpu;

    const double bytes = (double)n * sizeof(float), gbs = bytes / (gpu_ms * 1e-3) / 1e9;
    printf("| sample %-26s | %6d x %-3d | %8.1f | %7.0f | %5.1f%% | %10.1f | %6.0fx |\n", c.name, V, rows,
           gpu_ms * 1e3, gbs, 100.0 * gbs * 1e9 / ceiling, cpu * 1e6, cpu / (gpu_ms * 1e-3));
#undef LAUNCH
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    for (int r = 0; r < rows; r++) cs_sampler_free(s[r]);
    free(s);
    cudaFree(d_logits);
    cudaFree(d_lp);
    cudaFree(d_top_lp);
    cudaFree(d_ids);
    cudaFree(d_top_ids);
    cudaFree(d_p);
    cudaFree(d_ws);
    free(h);
    free(tmp);
    free(p);
    free(ids);
    free(top_ids);
    free(lp);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("bench_sample: no CUDA device");
        return 0;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    const double ceiling = bench_copy_rate();
    printf("device: %s; device-to-device copy %.2f TB/s (read + write)\n\n", prop.name, ceiling / 1e12);
    printf("| kernel | vocab x rows | us | GB/s (logits once) | %% of copy | CPU sampler us | CPU / GPU |\n"
           "|---|---|---|---|---|---|---|\n");
    const cfg cfgs[2] = {{"greedy", 0.0f, 0, 1.0f, 0}, {"T 0.8 k 50 p 0.9 logprobs 5", 0.8f, 50, 0.9f, 5}};
    const int Vs[2] = {128256, 49152}, rows[3] = {1, 64, 256};
    for (int v = 0; v < 2; v++)
        for (int c = 0; c < 2; c++)
            for (int r = 0; r < 3; r++) bench_one(Vs[v], rows[r], cfgs[c], ceiling);
    return 0;
}
#endif
