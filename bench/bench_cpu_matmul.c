// CPU matmul (the reference kernel, which is also the CPU path) at the default model's shapes,
// for each weight type: GEMV (m = 1) and GEMM (m = 256) with 1 and all threads. Validates a
// few outputs against a double-precision dot product first; prints GB/s of weights read and
// GFLOP/s.
//
//     bench_cpu_matmul [THREADS]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/assert.h"
#include "kernels/kernels.h"

static void *weights(cs_dtype t, int n, int k, size_t *bytes) {
    size_t rb;
    CS_ASSERT(cs_dtype_row_bytes(t, k, &rb));
    *bytes = rb * (size_t)n;
    unsigned char *w = malloc(*bytes);
    for (size_t i = 0; i < *bytes; i++) w[i] = (unsigned char)(i * 2654435761u >> 13);
    int bb = cs_dtype_block_bytes(t);
    if (t >= CS_DTYPE_Q8_0) // finite scales
        for (size_t b = 0; b < *bytes / (size_t)bb; b++) {
            uint16_t d = cs_f32_to_fp16(0.01f), m = cs_f32_to_fp16(-0.04f);
            memcpy(w + b * (size_t)bb, &d, 2);
            if (t == CS_DTYPE_Q4_1) memcpy(w + b * (size_t)bb + 2, &m, 2);
        }
    else if (t == CS_DTYPE_F32)
        for (size_t i = 0; i < *bytes / 4; i++) ((float *)w)[i] = (float)(i % 17) * 0.01f;
    else
        for (size_t i = 0; i < *bytes / 2; i++) {
            uint16_t h = t == CS_DTYPE_F16 ? cs_f32_to_fp16((float)(i % 17) * 0.01f) : cs_f32_to_bf16((float)(i % 17) * 0.01f);
            memcpy(w + 2 * i, &h, 2);
        }
    return w;
}

static void run(cs_dtype t, int m, int n, int k, cs_pool *pool) {
    size_t bytes;
    void *w = weights(t, n, k, &bytes);
    float *x = malloc(sizeof(float) * (size_t)m * k), *out = malloc(sizeof(float) * (size_t)m * n);
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = (float)((int)(i % 13) - 6) * 0.1f;
    float *scratch = aligned_alloc(64, cs_cpu_matmul_scratch(k, cs_pool_threads(pool)) + 64);
    cs_cpu_matmul(out, x, w, t, NULL, m, n, k, scratch, pool);
    float *row = malloc(sizeof(float) * k);
    size_t rb = bytes / (size_t)n;
    for (int j = 0; j < n; j += n / 7 + 1) { // validate a few outputs of the last x row
        cs_cpu_dequant_row(t, (unsigned char *)w + (size_t)j * rb, row, k);
        double ref = 0, mag = 0;
        for (int c = 0; c < k; c++) {
            ref += (double)x[(size_t)(m - 1) * k + c] * row[c];
            mag += fabs((double)x[(size_t)(m - 1) * k + c] * row[c]);
        }
        CS_ASSERT(fabs(out[(size_t)(m - 1) * n + j] - ref) <= 1e-5 * mag + 1e-6);
    }
    int reps = m == 1 ? 20 : 3;
    double t0 = cs_now_s();
    for (int r = 0; r < reps; r++) cs_cpu_matmul(out, x, w, t, NULL, m, n, k, scratch, pool);
    double s = (cs_now_s() - t0) / reps;
    printf("| %-4s | %3d x %5d x %4d | %d | %9.1f | %6.2f | %6.1f |\n", cs_dtype_name(t), m, n, k,
           cs_pool_threads(pool), s * 1e6, (double)bytes / s / 1e9, 2.0 * m * n * k / s / 1e9);
    free(w);
    free(x);
    free(out);
    free(scratch);
    free(row);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    cs_pool *one = cs_pool_init(1), *all = cs_pool_init(threads);
    printf("| weights | m x n x k | threads | us | weight GB/s | GFLOP/s |\n|---|---|---|---|---|---|\n");
    const cs_dtype types[] = {CS_DTYPE_Q4_1, CS_DTYPE_Q4_0, CS_DTYPE_Q8_0, CS_DTYPE_F16, CS_DTYPE_F32};
    for (int i = 0; i < 5; i++) {
        run(types[i], 1, 49152, 576, one);
        run(types[i], 1, 49152, 576, all);
        run(types[i], 256, 1536, 576, all);
    }
    cs_pool_free(one);
    cs_pool_free(all);
    return 0;
}
