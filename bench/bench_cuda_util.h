// Shared by the GPU benchmarks: the measured copy-rate ceiling, medians of CUDA-event timings,
// and a buffer to flush L2 between timed runs. Include only under CSERVE_HAVE_CUDA.
#ifndef CS_BENCH_CUDA_UTIL_H
#define CS_BENCH_CUDA_UTIL_H

#include <cuda_runtime.h>
#include <stdlib.h>

#include "common/assert.h"

static int bench_cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

// Sorts t and returns its median.
static inline float bench_median_ms(float *t, int n) {
    qsort(t, (size_t)n, sizeof *t, bench_cmp_float);
    return t[n / 2];
}

// Device-to-device copy of 1 GiB: the bandwidth ceiling (bytes read + written per second).
static inline double bench_copy_rate(void) {
    size_t n = (size_t)1 << 30;
    void *a, *b;
    CS_ASSERT(cudaMalloc(&a, n) == cudaSuccess && cudaMalloc(&b, n) == cudaSuccess);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[10];
    for (int i = 0; i < 13; i++) {
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (i >= 3) cudaEventElapsedTime(&t[i - 3], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)n / (bench_median_ms(t, 10) * 1e-3);
}

// Weight benchmarks rotate through copies of a matrix until they pass this (L2: 60 MB), so
// each timed run reads memory, not cache: the number of copies of a matrix of `bytes`.
#define BENCH_ROTATE_BYTES ((size_t)256 << 20)
#define BENCH_MAX_COPIES 16
static inline int bench_copies(size_t bytes) {
    size_t n = (BENCH_ROTATE_BYTES + bytes - 1) / bytes;
    return n > BENCH_MAX_COPIES ? BENCH_MAX_COPIES : (int)n;
}

// Evicts L2 (60 MB on an H200) by writing a larger buffer; call before each timed run when
// the working set would otherwise stay cached.
static inline void bench_flush_l2(void) {
    static void *buf;
    const size_t n = (size_t)256 << 20;
    if (!buf) CS_ASSERT(cudaMalloc(&buf, n) == cudaSuccess);
    cudaMemsetAsync(buf, 0, n, 0);
}

#endif
