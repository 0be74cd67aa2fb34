// The bf16 GEMV (kernels/cuda/gemv.cu) against cuBLAS bf16 on the same shapes in the same run:
// Llama-3-8B projections (K x N: 4096x6144 fused qkv, 4096x4096, 4096x28672 fused gate/up,
// 14336x4096, and lm_head 4096x128256 with fp32 out) for M = 1, 2, 4, 8 tokens. Weights are
// random and rotated through enough copies to defeat the L2; each shape's GEMV result is
// checked against cuBLAS first. Prints µs (median of CUDA-event timings), GB/s of weights,
// that as % of the measured copy rate, and cuBLAS's time over ours.
//
//     bench_gemv [--ms 1,2,4,8]
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_gemv: built without CUDA, nothing to measure");
    return 0;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda_util.h"
#include "common/assert.h"
#include "common/rng.h"
#include "engine/model.h"
#include "kernels/cuda/cuda_kernels.h"

#define CK(call) CS_ASSERT((call) == cudaSuccess)
#define RUNS 30

typedef struct shape {
    const char *name;
    int k, n, f32;
} shape;

static uint64_t rng = 0x853c49e6748fea9bull;

// Median µs of RUNS launches of fn over the copies, L2 flushed before each.
static float time_us(cs_cuda_blas *blas, int gemv, void *out, int f32, const uint16_t *x, uint16_t **w, int copies,
                     int m, int n, int k) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float t[RUNS];
    for (int i = 0; i < RUNS + 3; i++) {
        bench_flush_l2();
        const uint16_t *wi = w[i % copies];
        CK(cudaEventRecord(e0, 0));
        if (gemv) cs_cuda_gemv(out, f32, x, wi, m, n, k, NULL);
        else cs_cuda_gemm(blas, out, f32, x, wi, m, n, k);
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        if (i >= 3) CK(cudaEventElapsedTime(&t[i - 3], e0, e1));
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return bench_median_ms(t, RUNS) * 1e3f;
}

// Largest |ours - cuBLAS| over the outputs, relative to the largest |cuBLAS|.
static double compare(const void *a, const void *b, size_t n, int f32) {
    double worst = 0, big = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double x = f32 ? ((const float *)a)[i] : cs_bf16_to_f32(((const uint16_t *)a)[i]);
        double y = f32 ? ((const float *)b)[i] : cs_bf16_to_f32(((const uint16_t *)b)[i]);
        if (!isfinite(x)) return INFINITY;
        if (fabs(x - y) > worst) worst = fabs(x - y);
        if (fabs(y) > big) big = fabs(y);
    }
    return worst / big;
}

int main(int argc, char **argv) {
    const char *ms_arg = "1,2,4,8";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ms") && i + 1 < argc) ms_arg = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gemv [--ms 1,2,4,8]\n");
            return 2;
        }
    }
    if (cs_cuda_device_count() == 0) {
        puts("bench_gemv: no CUDA device");
        return 0;
    }
    int ms[16], n_ms = 0;
    char *list = strdup(ms_arg);
    for (char *p = strtok(list, ","); p && n_ms < 16; p = strtok(NULL, ",")) {
        int m = atoi(p);
        if (m < 1 || m > CS_CUDA_GEMV_MAX_M) {
            fprintf(stderr, "bench_gemv: M %d is not in 1..%d\n", m, CS_CUDA_GEMV_MAX_M);
            return 2;
        }
        ms[n_ms++] = m;
    }
    free(list);
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    double copy = bench_copy_rate();
    printf("device: %s; copy %.2f TB/s\n\n", prop.name, copy / 1e12);
    printf("| shape (K x N) | M | gemv us | GB/s | %% of copy | cuBLAS us | cuBLAS / gemv | max rel diff |\n"
           "|---|---|---|---|---|---|---|---|\n");
    const shape shapes[] = {{"qkv", 4096, 6144, 0}, {"o", 4096, 4096, 0}, {"gate/up", 4096, 28672, 0},
                            {"down", 14336, 4096, 0}, {"lm_head", 4096, 128256, 1}};
    cs_cuda_blas *blas = cs_cuda_blas_init(NULL);
    CS_ASSERT(blas);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        size_t wn = (size_t)sh->n * sh->k, bytes = wn * 2;
        int copies = bench_copies(bytes);
        uint16_t *h = malloc(bytes), *w[BENCH_MAX_COPIES];
        for (size_t i = 0; i < wn; i++) h[i] = cs_f32_to_bf16((float)(cs_xorshift32(&rng) >> 8) / 8388608.0f - 1.0f);
        for (int c = 0; c < copies; c++) {
            CK(cudaMalloc((void **)&w[c], bytes));
            CK(cudaMemcpy(w[c], h, bytes, cudaMemcpyHostToDevice));
        }
        uint16_t *hx = malloc((size_t)CS_CUDA_GEMV_MAX_M * sh->k * 2), *x;
        for (size_t i = 0; i < (size_t)CS_CUDA_GEMV_MAX_M * sh->k; i++)
            hx[i] = cs_f32_to_bf16((float)(cs_xorshift32(&rng) >> 8) / 8388608.0f - 1.0f);
        CK(cudaMalloc((void **)&x, (size_t)CS_CUDA_GEMV_MAX_M * sh->k * 2));
        CK(cudaMemcpy(x, hx, (size_t)CS_CUDA_GEMV_MAX_M * sh->k * 2, cudaMemcpyHostToDevice));
        size_t es = sh->f32 ? 4 : 2, on = (size_t)CS_CUDA_GEMV_MAX_M * sh->n * es;
        void *o1, *o2, *h1 = malloc(on), *h2 = malloc(on);
        CK(cudaMalloc(&o1, on));
        CK(cudaMalloc(&o2, on));
        for (int i = 0; i < n_ms; i++) {
            int m = ms[i];
            cs_cuda_gemv(o1, sh->f32, x, w[0], m, sh->n, sh->k, NULL);
            cs_cuda_gemm(blas, o2, sh->f32, x, w[0], m, sh->n, sh->k);
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(h1, o1, (size_t)m * sh->n * es, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(h2, o2, (size_t)m * sh->n * es, cudaMemcpyDeviceToHost));
            double diff = compare(h1, h2, (size_t)m * sh->n, sh->f32);
            float ours = time_us(blas, 1, o1, sh->f32, x, w, copies, m, sh->n, sh->k);
            float theirs = time_us(blas, 0, o2, sh->f32, x, w, copies, m, sh->n, sh->k);
            double gbs = (double)bytes / (ours * 1e-6) / 1e9;
            printf("| %s %dx%d | %d | %.1f | %.0f | %.1f%% | %.1f | %.2fx | %.1e |\n", sh->name, sh->k, sh->n, m, ours, gbs,
                   100.0 * gbs * 1e9 / copy, theirs, theirs / ours, diff);
        }
        for (int c = 0; c < copies; c++) cudaFree(w[c]);
        cudaFree(x), cudaFree(o1), cudaFree(o2);
        free(h), free(hx), free(h1), free(h2);
    }
    cs_cuda_blas_free(blas);
    return 0;
}
#endif
