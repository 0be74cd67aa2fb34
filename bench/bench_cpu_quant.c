// CPU matmul over the load-time quantised weight types (--quant) against F32: time per call
// at m = 1 (GEMV, blocks decoded in registers) and m = 16 (rows dequantised into scratch,
// then tiled), for a square 2048 x 2048 matrix and the default model's FFN (up/gate 1536 x
// 576, down 576 x 1536). Weights are random floats quantised with cs_cpu_quantize_row; a few
// outputs are checked against a double-precision dot product over the dequantised weights
// before timing. GB/s counts the packed weight bytes read once per call; "vs F32" is F32's
// time over this type's.
//
//     bench_cpu_quant [THREADS]      (default: one per core)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/assert.h"
#include "common/clock.h"
#include "kernels/kernels.h"

static uint64_t rng = 0x13198a2e03707344ull;
static float frand(void) { // uniform in [-1, 1)
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

// Seconds per call of out (m, n) = x (m, k) @ W^T with W (n, k) random floats stored as t;
// *bytes: W's packed size. Returns a negative time when k is not a multiple of t's group.
static double run(cs_dtype t, int m, int n, int k, cs_pool *pool, size_t *bytes) {
    size_t rb;
    if (!cs_dtype_row_bytes(t, k, &rb)) return -1;
    *bytes = rb * (size_t)n;
    float *wf = malloc(sizeof(float) * (size_t)n * k), *x = malloc(sizeof(float) * (size_t)m * k);
    float *out = malloc(sizeof(float) * (size_t)m * n), *row = malloc(sizeof(float) * k);
    unsigned char *w = t == CS_DTYPE_F32 ? (unsigned char *)wf : malloc(*bytes);
    for (size_t i = 0; i < (size_t)n * k; i++) wf[i] = frand() * 0.05f;
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = frand();
    if (t != CS_DTYPE_F32)
        for (int r = 0; r < n; r++) cs_cpu_quantize_row(t, wf + (size_t)r * k, w + (size_t)r * rb, k);
    float *scratch = aligned_alloc(64, cs_cpu_matmul_scratch(k, cs_pool_threads(pool)) + 64);
    cs_cpu_matmul(out, x, w, t, NULL, m, n, k, scratch, pool);
    for (int j = 0; j < n; j += n / 7 + 1) { // validate a few outputs of the last x row
        cs_cpu_dequant_row(t, w + (size_t)j * rb, row, k);
        double ref = 0, mag = 0;
        for (int c = 0; c < k; c++) {
            double p = (double)x[(size_t)(m - 1) * k + c] * row[c];
            ref += p;
            mag += fabs(p);
        }
        CS_ASSERT(fabs(out[(size_t)(m - 1) * n + j] - ref) <= (k / 8 + 4) * ldexp(1, -23) * mag);
    }
    int reps = 0;
    double t0 = cs_now_s(), s;
    do { // at least 5 calls and 0.3 s
        cs_cpu_matmul(out, x, w, t, NULL, m, n, k, scratch, pool);
        reps++;
    } while ((s = cs_now_s() - t0) < 0.3 || reps < 5);
    if (w != (unsigned char *)wf) free(w);
    free(wf);
    free(x);
    free(out);
    free(row);
    free(scratch);
    return s / reps;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    cs_pool *pool = cs_pool_init(threads);
    const cs_dtype types[] = {CS_DTYPE_F32, CS_DTYPE_Q8_0, CS_DTYPE_Q4_1, CS_DTYPE_I4_G64,
                              CS_DTYPE_I4_G128, CS_DTYPE_I8_G64, CS_DTYPE_I8_G128};
    const int shapes[][2] = {{2048, 2048}, {1536, 576}, {576, 1536}}; // n x k
    const int ms[] = {1, 16};
    printf("%d threads\n\n| weights | n x k | m | us | GB/s | vs F32 |\n|---|---|---|---|---|---|\n",
           cs_pool_threads(pool));
    for (int si = 0; si < 3; si++)
        for (int mi = 0; mi < 2; mi++) {
            int n = shapes[si][0], k = shapes[si][1], m = ms[mi];
            double f32 = 0;
            for (int ti = 0; ti < 7; ti++) {
                size_t bytes;
                double s = run(types[ti], m, n, k, pool, &bytes);
                if (ti == 0) f32 = s;
                if (s < 0)
                    printf("| %-7s | %4d x %4d | %2d | n/a: k %% %d != 0 | | |\n", cs_dtype_name(types[ti]), n, k, m,
                           cs_dtype_group(types[ti]));
                else
                    printf("| %-7s | %4d x %4d | %2d | %8.1f | %6.2f | %5.2fx |\n", cs_dtype_name(types[ti]), n, k, m,
                           s * 1e6, (double)bytes / s / 1e9, f32 / s);
                fflush(stdout);
            }
        }
    cs_pool_free(pool);
    return 0;
}
