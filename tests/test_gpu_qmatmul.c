// The int4 / int8 dequant-matmul (kernels/cuda/qmatmul.cu) against the CPU reference:
//   - the GPU's dequantised weights (cs_cuda_qunpack_bf16, the fragments the matmul makes) equal
//     cs_qpack_weight's bf16(s q + m) bit for bit, for both widths and every group;
//   - out = x w^T, on fresh random codes, bf16-exact scales and activations, against float64
//     sums over those weights: shapes with n not a multiple of 16 or an odd multiple of 64, k
//     not a multiple of 64 or of 256, m from 1 to 1024, every path (the GEMV for m <= 8, bit
//     for bit what the MMA kernel gives, its register ring wrapping on long parts; the MMA
//     kernel's tile sizes, the split-K fix-up, dequantise + cuBLAS, AUTO), bf16 and fp32
//     outputs; outputs poisoned before each run, a guard band after them; the same call twice
//     gives the same bits;
//   - the device quantiser (for dummy benchmark weights) keeps every weight within half a step.
// Exits 77 (skipped) when cserve was built without CUDA or there is no device.
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
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/qpack.h"

#define GUARD 4096 // bytes checked past each output
#define CK(call) CS_ASSERT((call) == cudaSuccess)

static uint64_t rng = 0x5eed5eed12345ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static float rand_unit(void) { return (float)((int)(next_u32() % 2001) - 1000) / 1000.0f; }

typedef struct qmat_case {
    cs_qpack_dims d;
    cs_cuda_qmat g;     // device copy
    uint32_t *pc, *ps;  // host packed
    float *w;           // (n, k) the weights the kernels compute
} qmat_case;

static void make_case(qmat_case *q, int bits, int group, int64_t n, int64_t k) {
    CS_ASSERT(cs_qpack_dims_of(bits, group, n, k, &q->d));
    int64_t ng = k / group;
    uint8_t *codes = malloc((size_t)(n * k));
    float *s = malloc(sizeof(float) * (size_t)(n * ng)), *m = malloc(sizeof(float) * (size_t)(n * ng));
    for (int64_t i = 0; i < n * k; i++) codes[i] = (uint8_t)(bits == 4 ? next_u32() % 16 : next_u32() % 256);
    for (int64_t i = 0; i < n * ng; i++) { // scales of realistic size: weights around +-0.1
        s[i] = cs_bf16_to_f32(cs_f32_to_bf16((bits == 4 ? 0.015f : 0.0008f) * (1.0f + 0.5f * rand_unit())));
        m[i] = bits == 4 ? cs_bf16_to_f32(cs_f32_to_bf16(-0.11f * (1.0f + 0.3f * rand_unit()))) : 0.0f;
    }
    q->pc = malloc(q->d.code_words * 4);
    q->ps = malloc(q->d.scale_words * 4);
    cs_qpack(&q->d, codes, s, m, q->pc, q->ps);
    q->w = malloc(sizeof(float) * (size_t)(n * k));
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < k; c++) q->w[r * k + c] = cs_qpack_weight(&q->d, q->pc, q->ps, r, c);
    uint32_t *dc, *ds;
    CK(cudaMalloc((void **)&dc, q->d.code_words * 4));
    CK(cudaMalloc((void **)&ds, q->d.scale_words * 4));
    CK(cudaMemcpy(dc, q->pc, q->d.code_words * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(ds, q->ps, q->d.scale_words * 4, cudaMemcpyHostToDevice));
    q->g = (cs_cuda_qmat){q->d, dc, ds};
    free(codes), free(s), free(m);
}

static void free_case(qmat_case *q) {
    cudaFree((void *)q->g.codes);
    cudaFree((void *)q->g.scales);
    free(q->pc), free(q->ps), free(q->w);
}

// The GPU's weights == cs_qpack_weight's, bit for bit.
static void check_unpack(const qmat_case *q) {
    size_t nk = (size_t)(q->d.n * q->d.k);
    uint16_t *dw, *hw = malloc(nk * 2);
    CK(cudaMalloc((void **)&dw, nk * 2));
    CK(cudaMemset(dw, 0xff, nk * 2));
    cs_cuda_qunpack_bf16(dw, &q->g, NULL);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hw, dw, nk * 2, cudaMemcpyDeviceToHost));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < nk; i++)
        if (cs_bf16_to_f32(hw[i]) != q->w[i] && bad++ == 0) first = i;
    TEST_CONDF(bad == 0, "int%d g%d %lldx%lld: %zu GPU weights differ (first at %zu: %g, want %g)", q->d.bits,
               q->d.group, (long long)q->d.n, (long long)q->d.k, bad, first, bad ? cs_bf16_to_f32(hw[first]) : 0.0,
               bad ? q->w[first] : 0.0);
    cudaFree(dw);
    free(hw);
}

static const char *path_name(int p) {
    return p == CS_CUDA_QPATH_MMA ? "mma" : p == CS_CUDA_QPATH_CUBLAS ? "cublas" : p == CS_CUDA_QPATH_GEMV ? "gemv" : "auto";
}

// out = x w^T on the GPU by each path in paths, against float64 sums over the same bf16
// weights and activations (computed once); bf16 output, or fp32 with out_f32.
static void check_matmul(const qmat_case *q, cs_cuda_blas *blas, int m, const int *paths, int n_paths, int out_f32) {
    int64_t n = q->d.n, k = q->d.k;
    uint16_t *hx = malloc((size_t)(m * k) * 2);
    float *xf = malloc(sizeof(float) * (size_t)(m * k));
    for (int64_t i = 0; i < m * k; i++) {
        hx[i] = cs_f32_to_bf16(rand_unit() * 2.0f);
        xf[i] = cs_bf16_to_f32(hx[i]);
    }
    double *ref = malloc(sizeof(double) * (size_t)(m * n)), *mag = malloc(sizeof(double) * (size_t)(m * n));
    for (int i = 0; i < m; i++)
        for (int64_t r = 0; r < n; r++) {
            double sum = 0, abs_sum = 0;
            const float *wr = q->w + r * k, *xr = xf + (int64_t)i * k;
            for (int64_t c = 0; c < k; c++) {
                sum += (double)wr[c] * xr[c];
                abs_sum += fabs((double)wr[c] * xr[c]);
            }
            ref[(size_t)i * n + r] = sum;
            mag[(size_t)i * n + r] = abs_sum;
        }
    size_t ws_bytes = 0, out_bytes = (size_t)(m * n) * (out_f32 ? 4 : 2);
    for (int p = 0; p < n_paths; p++) {
        size_t ws = cs_cuda_qmatmul_workspace(&q->d, m, paths[p]);
        if (ws > ws_bytes) ws_bytes = ws;
    }
    void *dx, *dout, *ws;
    CK(cudaMalloc(&dx, (size_t)(m * k) * 2));
    CK(cudaMalloc(&dout, out_bytes + GUARD)); // a guard band past the output: no stray writes
    CK(cudaMalloc(&ws, ws_bytes));
    CK(cudaMemset(ws, 0, ws_bytes));
    CK(cudaMemcpy(dx, hx, (size_t)(m * k) * 2, cudaMemcpyHostToDevice));
    unsigned char *h1 = malloc(out_bytes + GUARD), *h2 = malloc(out_bytes + GUARD), *mma = NULL;
    for (int p = 0; p < n_paths; p++) {
        for (int run = 0; run < 2; run++) {
            CK(cudaMemset(dout, 0xff, out_bytes + GUARD)); // NaN: an output never written shows
            cs_cuda_qmatmul(blas, dout, out_f32, dx, &q->g, m, ws, ws_bytes, paths[p]);
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(run ? h2 : h1, dout, out_bytes + GUARD, cudaMemcpyDeviceToHost));
        }
        size_t stray = 0;
        for (size_t i = out_bytes; i < out_bytes + GUARD; i++) stray += h1[i] != 0xff;
        TEST_CONDF(stray == 0, "int%d g%d %lldx%lld m=%d %s: %zu bytes written past the output", q->d.bits, q->d.group,
                   (long long)n, (long long)k, m, path_name(paths[p]), stray);
        TEST_CONDF(memcmp(h1, h2, out_bytes) == 0, "int%d g%d %lldx%lld m=%d %s: two runs differ", q->d.bits,
                   q->d.group, (long long)n, (long long)k, m, path_name(paths[p]));
        if (paths[p] == CS_CUDA_QPATH_MMA && !mma && (mma = malloc(out_bytes))) memcpy(mma, h1, out_bytes);
        if (paths[p] == CS_CUDA_QPATH_GEMV && mma) // the same fragments, the same mma order
            TEST_CONDF(memcmp(mma, h1, out_bytes) == 0, "int%d g%d %lldx%lld m=%d: the GEMV's bits differ from the MMA "
                       "kernel's", q->d.bits, q->d.group, (long long)n, (long long)k, m);
        size_t bad = 0;
        double worst = 0;
        for (size_t i = 0; i < (size_t)(m * n); i++) {
            double got = out_f32 ? ((float *)h1)[i] : cs_bf16_to_f32(((uint16_t *)h1)[i]);
            // fp32 accumulation; a bf16 output adds its rounding
            double tol = 2e-5 * mag[i] + (out_f32 ? 0 : 0x1p-8 * fabs(ref[i])) + 1e-6;
            double err = fabs(got - ref[i]);
            if (!(err <= tol)) bad++;
            if (mag[i] > 0 && err / mag[i] > worst) worst = err / mag[i];
        }
        TEST_CONDF(bad == 0, "int%d g%d %lldx%lld m=%d %s %s: %zu of %lld outputs off (worst %.3g of sum |w x|)",
                   q->d.bits, q->d.group, (long long)n, (long long)k, m, path_name(paths[p]), out_f32 ? "fp32" : "bf16",
                   bad, (long long)(m * n), worst);
    }
    cudaFree(dx), cudaFree(dout), cudaFree(ws);
    free(hx), free(xf), free(ref), free(mag), free(h1), free(h2), free(mma);
}

// The device quantiser: every weight within half a step (plus the bf16 rounding of s, m).
static void check_quantize(int bits, int group, int64_t n, int64_t k) {
    cs_qpack_dims d;
    CS_ASSERT(cs_qpack_dims_of(bits, group, n, k, &d));
    size_t nk = (size_t)(n * k);
    uint16_t *hw = malloc(nk * 2), *hq = malloc(nk * 2);
    for (size_t i = 0; i < nk; i++) hw[i] = cs_f32_to_bf16(0.05f * rand_unit() + 0.01f * rand_unit() * rand_unit());
    uint16_t *dw, *dq;
    uint32_t *dc, *ds;
    CK(cudaMalloc((void **)&dw, nk * 2));
    CK(cudaMalloc((void **)&dq, nk * 2));
    CK(cudaMalloc((void **)&dc, d.code_words * 4));
    CK(cudaMalloc((void **)&ds, d.scale_words * 4));
    CK(cudaMemcpy(dw, hw, nk * 2, cudaMemcpyHostToDevice));
    cs_cuda_qquantize(dc, ds, &d, dw, NULL);
    cs_cuda_qmat q = {d, dc, ds};
    cs_cuda_qunpack_bf16(dq, &q, NULL);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hq, dq, nk * 2, cudaMemcpyDeviceToHost));
    uint32_t *ps = malloc(d.scale_words * 4);
    CK(cudaMemcpy(ps, ds, d.scale_words * 4, cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < k; c++) {
            uint32_t sm = ps[(size_t)((r / 16) * d.n_groups + c / group) * 16 + (size_t)(r % 16)];
            double s = cs_bf16_to_f32((uint16_t)sm), m = cs_bf16_to_f32((uint16_t)(sm >> 16));
            double w = cs_bf16_to_f32(hw[r * k + c]), got = cs_bf16_to_f32(hq[r * k + c]);
            // half a step, the step's own bf16 rounding over up to 15 (127) steps, and the offset's
            double tol = 0.5 * s + (bits == 4 ? 15 : 127) * s * 0x1p-8 + 0x1p-8 * (fabs(m) + fabs(w)) + 1e-7;
            if (!(fabs(got - w) <= tol)) bad++;
        }
    TEST_CONDF(bad == 0, "quantise int%d g%d %lldx%lld: %zu weights off", bits, group, (long long)n, (long long)k, bad);
    cudaFree(dw), cudaFree(dq), cudaFree(dc), cudaFree(ds);
    free(hw), free(hq), free(ps);
}

int main(void) {
    if (cs_cuda_device_count() < 1) {
        puts("no CUDA device: skipped");
        return 77;
    }
    cs_cuda_blas *blas = cs_cuda_blas_init(NULL);
    CS_ASSERT(blas);
    // (n, k): n off the 16-row tile and odd multiples of 64; k off 64 and off 256
    // ({320, 1248} in groups of 32: split-K whose last part ends in a half-padded chunk;
    // {3072, 14336}, m <= 8 and groups of 128 only: parts of 11 chunks or more, so the GEMV's
    // ring of 4 wraps; {16896, 14336}, int4, groups of 128, m = 6 to 8: 132 CTAs across n
    // take the 224 chunks in 4 parts of 56 on any GPU of 100 to 132 SMs, so the GEMV stages 6
    // tokens' activations (42 KB) in shared memory and reads 7 or 8 (49, 56 KB) from global)
    const int64_t shapes[][2] = {{64, 128}, {200, 96}, {320, 1216}, {320, 1248}, {1088, 4032}, {4096, 4096},
                                 {3072, 14336}, {16896, 14336}};
    const int ms[] = {1, 2, 3, 5, 8, 9, 16, 17, 32, 33, 64, 100, 256};
    for (int bits = 4; bits <= 8; bits += 4)
        for (int group = 32; group <= 128; group *= 2)
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
                int64_t n = shapes[si][0], k = shapes[si][1] / group * group; // whole groups
                if (k == 0 || (si >= 6 && group != 128) || (si == 7 && bits != 4)) continue;
                qmat_case q;
                make_case(&q, bits, group, n, k);
                check_unpack(&q);
                for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
                    int m = ms[mi];
                    if (m > 8 && (double)m * n * k > 2e8) continue; // the float64 reference's time
                    if ((m == 2 || m == 5) && (double)n * k > 5e6) continue;  // the GEMV's odd m: small shapes
                    if (si == 6 && m != 1 && m != 8) continue;
                    if (si == 7 && m != 8) continue;
                    int paths[4] = {CS_CUDA_QPATH_MMA}, n_paths = 1;
                    if (m <= 8) paths[n_paths++] = CS_CUDA_QPATH_GEMV;
                    if (m == 1 || m == 33 || m == 256) paths[n_paths++] = CS_CUDA_QPATH_CUBLAS;
                    if (m == 3 || m == 256) paths[n_paths++] = CS_CUDA_QPATH_AUTO;
                    check_matmul(&q, blas, m, paths, n_paths, (int)(mi % 2));
                }
                if (si == 2) check_matmul(&q, blas, 1024, (int[]){CS_CUDA_QPATH_AUTO}, 1, 0);
                for (int m = 6; si == 7 && m <= 7; m++)
                    check_matmul(&q, blas, m, (int[]){CS_CUDA_QPATH_GEMV, CS_CUDA_QPATH_MMA}, 2, m % 2);
                free_case(&q);
            }
    for (int bits = 4; bits <= 8; bits += 4) {
        check_quantize(bits, 32, 48, 192);
        check_quantize(bits, 128, 130, 512);
    }
    cs_cuda_blas_free(blas);
    return TEST_REPORT();
}
#endif
