// The int4 / int8 dequant-matmul (kernels/cuda/qmatmul.cu) at Llama-3-8B projection shapes
// (K x N: 4096x4096, 4096x1024, 4096x14336, 14336x4096, 4096x128256) for M = 1 .. 256 tokens,
// against cuBLAS bf16 on the same shape in the same run. Weights are random, quantised on the
// device (int4 group 128 unless --group), and rotated through enough copies to defeat the L2.
// Before timing, each shape's MMA and GEMV results are checked against dequantise + cuBLAS;
// the "int4 mma" column is the MMA kernel where AUTO takes the GEMV (m <= 8): the two side by side.
// Prints µs (median of CUDA-event timings), GB/s over the packed bytes (codes + scales), that
// as % of the measured copy rate, and the ratio of cuBLAS bf16's time to ours.
//
//     bench_qmatmul [--group 32|64|128] [--ms 1,4,16,32,64,128,256]
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_qmatmul: built without CUDA, nothing to measure");
    return 0;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda_util.h"
#include "common/assert.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/qpack.h"

#define CK(call) CS_ASSERT((call) == cudaSuccess)
#define RUNS 30

typedef struct qset {
    int bits, copies;
    cs_cuda_qmat m[BENCH_MAX_COPIES];
    size_t bytes; // packed bytes of one copy
} qset;

static void make_qset(qset *q, int bits, int group, int64_t n, int64_t k, const uint16_t *w) {
    cs_qpack_dims d;
    CS_ASSERT(cs_qpack_dims_of(bits, group, n, k, &d));
    q->bits = bits;
    q->bytes = (d.code_words + d.scale_words) * 4;
    q->copies = bench_copies(q->bytes);
    for (int i = 0; i < q->copies; i++) {
        uint32_t *c, *s;
        CK(cudaMalloc((void **)&c, d.code_words * 4));
        CK(cudaMalloc((void **)&s, d.scale_words * 4));
        cs_cuda_qquantize(c, s, &d, w, NULL);
        q->m[i] = (cs_cuda_qmat){d, c, s};
    }
}

static void free_qset(qset *q) {
    for (int i = 0; i < q->copies; i++) {
        cudaFree((void *)q->m[i].codes);
        cudaFree((void *)q->m[i].scales);
    }
}

typedef struct ctx {
    cs_cuda_blas *blas;
    cudaEvent_t e0, e1;
    void *ws;
    size_t ws_bytes;
    uint16_t *x, *out;
} ctx;

static const char *const path_label[] = {"auto", "mma", "deq+cuBLAS", "gemv"};

static float time_q(ctx *c, const qset *q, int m, int path) {
    float t[RUNS];
    for (int r = -3; r < RUNS; r++) {
        const cs_cuda_qmat *w = &q->m[(r + 3) % q->copies];
        cudaEventRecord(c->e0, 0);
        cs_cuda_qmatmul(c->blas, c->out, 0, c->x, w, m, c->ws, c->ws_bytes, path);
        cudaEventRecord(c->e1, 0);
        cudaEventSynchronize(c->e1);
        if (r >= 0) cudaEventElapsedTime(&t[r], c->e0, c->e1);
    }
    return bench_median_ms(t, RUNS) * 1e3f;
}

static float time_bf16(ctx *c, uint16_t *const *w, int copies, int m, int n, int k) {
    float t[RUNS];
    for (int r = -3; r < RUNS; r++) {
        cudaEventRecord(c->e0, 0);
        cs_cuda_gemm(c->blas, c->out, 0, c->x, w[(r + 3) % copies], m, n, k);
        cudaEventRecord(c->e1, 0);
        cudaEventSynchronize(c->e1);
        if (r >= 0) cudaEventElapsedTime(&t[r], c->e0, c->e1);
    }
    return bench_median_ms(t, RUNS) * 1e3f;
}

// max |path - (dequantise + cuBLAS)| over max |dequantise + cuBLAS|, at m tokens.
static double check(ctx *c, const qset *q, int m, int path) {
    size_t n = (size_t)q->m[0].d.n, bytes = (size_t)m * n * 2;
    uint16_t *a = malloc(bytes), *b = malloc(bytes);
    cs_cuda_qmatmul(c->blas, c->out, 0, c->x, &q->m[0], m, c->ws, c->ws_bytes, path);
    CK(cudaMemcpy(a, c->out, bytes, cudaMemcpyDeviceToHost));
    cs_cuda_qmatmul(c->blas, c->out, 0, c->x, &q->m[0], m, c->ws, c->ws_bytes, CS_CUDA_QPATH_CUBLAS);
    CK(cudaMemcpy(b, c->out, bytes, cudaMemcpyDeviceToHost));
    double worst = 0, top = 0;
    for (size_t i = 0; i < (size_t)m * n; i++) {
        double x = cs_bf16_to_f32(a[i]), y = cs_bf16_to_f32(b[i]);
        if (!isfinite(x)) worst = INFINITY;
        if (fabs(x - y) > worst) worst = fabs(x - y);
        if (fabs(y) > top) top = fabs(y);
    }
    free(a), free(b);
    return top > 0 ? worst / top : worst;
}

int main(int argc, char **argv) {
    int group = 128, ms[16] = {1, 4, 16, 32, 64, 128, 256}, n_ms = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--group") && i + 1 < argc) group = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc) {
            n_ms = 0;
            for (char *p = strtok(argv[++i], ","); p && n_ms < 16; p = strtok(NULL, ",")) ms[n_ms++] = atoi(p);
        } else {
            fprintf(stderr, "usage: bench_qmatmul [--group 32|64|128] [--ms 1,4,...]\n");
            return 2;
        }
    }
    if (cs_cuda_device_count() == 0) {
        puts("bench_qmatmul: no CUDA device");
        return 0;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    double copy = bench_copy_rate();
    printf("device: %s; copy %.2f TB/s (read + write); int4 / int8 group %d; weights rotated past L2\n\n", prop.name,
           copy / 1e12, group);
    const int shapes[][2] = {{4096, 4096}, {4096, 1024}, {4096, 14336}, {14336, 4096}, {4096, 128256}};
    int x_rows = 16; // the most tokens of any call: the largest m, and the check's 16
    for (int i = 0; i < n_ms; i++) x_rows = ms[i] > x_rows ? ms[i] : x_rows;
    ctx c = {.blas = cs_cuda_blas_init(NULL)};
    CS_ASSERT(c.blas);
    CK(cudaEventCreate(&c.e0));
    CK(cudaEventCreate(&c.e1));
    printf("| K x N | M | int4 µs | GB/s | %% copy | int4 path | int4 mma µs | int4 deq+cuBLAS µs | bf16 cuBLAS µs | "
           "bf16 / int4 | int8 µs | int8 %% copy |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int k = shapes[si][0], n = shapes[si][1];
        size_t wbytes = (size_t)n * k * 2;
        int bf_copies = bench_copies(wbytes);
        uint16_t *w[BENCH_MAX_COPIES];
        for (int i = 0; i < bf_copies; i++) {
            CK(cudaMalloc((void **)&w[i], wbytes));
            cs_cuda_fill_dummy_bf16(w[i], (int64_t)n * k, 99 + (uint64_t)i, (uint32_t)si, 0.02f, NULL);
        }
        qset q4, q8;
        make_qset(&q4, 4, group, n, k, w[0]);
        make_qset(&q8, 8, group, n, k, w[0]);
        size_t ws_most = 0; // every path at every m of the run (the check runs m = 16)
        for (int p = CS_CUDA_QPATH_AUTO; p <= CS_CUDA_QPATH_GEMV; p++) {
            size_t w4 = cs_cuda_qmatmul_workspace(&q4.m[0].d, x_rows, p), w8 = cs_cuda_qmatmul_workspace(&q8.m[0].d, x_rows, p);
            if (w4 > ws_most) ws_most = w4;
            if (w8 > ws_most) ws_most = w8;
        }
        c.ws_bytes = ws_most;
        CK(cudaMalloc(&c.ws, c.ws_bytes));
        CK(cudaMemset(c.ws, 0, c.ws_bytes));
        CK(cudaMalloc((void **)&c.x, (size_t)x_rows * k * 2));
        CK(cudaMalloc((void **)&c.out, (size_t)x_rows * n * 2));
        cs_cuda_fill_dummy_bf16(c.x, (int64_t)x_rows * k, 5, 1000, 1.0f, NULL);
        CK(cudaDeviceSynchronize());
        double err[4] = {check(&c, &q4, 16, CS_CUDA_QPATH_MMA), check(&c, &q8, 16, CS_CUDA_QPATH_MMA),
                         check(&c, &q4, 4, CS_CUDA_QPATH_GEMV), check(&c, &q8, 4, CS_CUDA_QPATH_GEMV)};
        printf("| %dx%d | check | vs deq+cuBLAS (max |diff| / max |out|): mma M=16 int4 %.2g, int8 %.2g; gemv M=4 "
               "int4 %.2g, int8 %.2g |\n", k, n, err[0], err[1], err[2], err[3]);
        for (int i = 0; i < 4; i++) // bf16 outputs of one fp32 sum in another order: a few ulp of bf16
            if (!(err[i] <= 1e-2)) {
                fprintf(stderr, "bench_qmatmul: %dx%d disagrees with dequantise + cuBLAS (%.2g): not timing it\n", k, n, err[i]);
                return 1;
            }
        for (int i = 0; i < n_ms; i++) {
            int m = ms[i];
            float t_auto = time_q(&c, &q4, m, CS_CUDA_QPATH_AUTO);
            float t_mma = time_q(&c, &q4, m, CS_CUDA_QPATH_MMA);
            float t_deq = m >= 16 ? time_q(&c, &q4, m, CS_CUDA_QPATH_CUBLAS) : NAN;
            float t_bf = time_bf16(&c, w, bf_copies, m, n, k);
            double gbs = (double)q4.bytes / (t_auto * 1e-6) / 1e9;
            char i8[64] = "|";
            if (m == 1) {
                float t8 = time_q(&c, &q8, m, CS_CUDA_QPATH_AUTO);
                snprintf(i8, sizeof i8, "%.1f | %.1f%%", t8, 100.0 * (double)q8.bytes / (t8 * 1e-6) / copy);
            }
            printf("| %dx%d | %d | %.1f | %.0f | %.1f%% | %s | %.1f | %.1f | %.1f | %.2fx | %s |\n", k, n, m, t_auto, gbs,
                   100.0 * gbs * 1e9 / copy, path_label[cs_cuda_qmatmul_path_for(m)],
                   t_mma, t_deq, t_bf, t_bf / t_auto, i8);
            fflush(stdout);
        }
        free_qset(&q4);
        free_qset(&q8);
        for (int i = 0; i < bf_copies; i++) cudaFree(w[i]);
        cudaFree(c.ws), cudaFree(c.x), cudaFree(c.out);
    }
    cs_cuda_blas_free(c.blas);
    return 0;
}
#endif
