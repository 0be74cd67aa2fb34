// out (m, n) = x (m, k) @ W^T (+ bias), W (n, k) stored as any cs_dtype, fp32 accumulation.
//
// Each task owns TILE_N weight rows: it dequantises them once into fp32 scratch, then runs a
// 2x4 register-tiled microkernel over all m rows of x, so a weight byte is read once per
// call and an x row once per TILE_N weight rows. Every output element is computed by the
// same sequence of 8-wide FMAs over k in order, whatever m or the tile it falls in, so a
// token's result does not depend on what else is in the batch (batch invariance).
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/assert.h"
#include "../kernels.h"
#include "cpu_simd.h"
#include "quant_simd.h"

#define TILE_N 16
#define GEMV_MAX_M 4 // up to this many x rows, quantised weights are decoded in registers

typedef struct matmul_job {
    float *out;
    const float *x;
    const unsigned char *w;
    size_t w_row_bytes;
    cs_dtype wt;
    const float *bias;
    int m, n, k;
    float *scratch; // per thread: TILE_N * k floats
} matmul_job;

// Dot products of 2 x rows with 4 weight rows, out[r][c] for x row r, weight row c. Eight
// accumulators plus the loads fit the 16 AVX registers without spilling; each weight vector
// is loaded once and used twice.
static void micro_2x4(const float *x, int ldx, const float *w, int ldw, int k, float out[2][4]) {
    cs_v8 a00 = cs_v8_zero(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    const float *x0 = x, *x1 = x + ldx, *w0 = w, *w1 = w + ldw, *w2 = w + 2 * (size_t)ldw, *w3 = w + 3 * (size_t)ldw;
    int k8 = k & ~7;
    for (int i = 0; i < k8; i += 8) {
        cs_v8 v0 = cs_v8_load(x0 + i), v1 = cs_v8_load(x1 + i), wv;
        wv = cs_v8_load(w0 + i);
        a00 = cs_v8_fma(v0, wv, a00);
        a10 = cs_v8_fma(v1, wv, a10);
        wv = cs_v8_load(w1 + i);
        a01 = cs_v8_fma(v0, wv, a01);
        a11 = cs_v8_fma(v1, wv, a11);
        wv = cs_v8_load(w2 + i);
        a02 = cs_v8_fma(v0, wv, a02);
        a12 = cs_v8_fma(v1, wv, a12);
        wv = cs_v8_load(w3 + i);
        a03 = cs_v8_fma(v0, wv, a03);
        a13 = cs_v8_fma(v1, wv, a13);
    }
    cs_v8 acc[2][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}};
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 4; c++) {
            float s = cs_v8_sum(acc[r][c]);
            for (int i = k8; i < k; i++) s = fmaf(x[(size_t)r * ldx + i], w[(size_t)c * ldw + i], s);
            out[r][c] = s;
        }
}


// Small m: each quantised block is decoded in registers, 32 weights at a time, and used at
// once, so the weights stream through once per x row (m <= GEMV_MAX_M). Four weight rows
// advance together so their FMA chains overlap, with the accumulators in named registers.
// Each output element still sees the arithmetic of cs_dot_f32 over the dequantised row (same
// weight values, one accumulator, same FMA order over k), bit for bit, whatever the group.
#define GEMV_ROWS 4
// Decode streams every weight from memory once, and the hardware prefetcher alone left the
// four row streams waiting on memory (Q8_0 lm_head: 2.8 GB/s of 14.6 on this machine's one
// thread). Rows are contiguous, so each row asks for the same offset in the next group of
// four rows: every byte once, one group (a few KiB) ahead, into L2 (a far distance could
// outrun L1). An address past the weights is harmless: a prefetch never faults; it is formed
// as an integer, not a pointer.
#define GEMV_PREFETCH(p, ahead) __builtin_prefetch((const void *)((uintptr_t)(p) + (ahead)), 0, 2)
#define GEMV_STEP(r, BB, decode)                                                          \
    do {                                                                                  \
        cs_v8 w[4];                                                                       \
        decode(wrow[r] + (size_t)b * (BB), s, w);                                         \
        for (int q = 0; q < 4; q++) acc##r = cs_v8_fma(cs_v8_load(xb + 8 * q), w[q], acc##r); \
    } while (0)
// G weights in BB bytes per block, decoded by sub-block (quant_simd.h).
#define GEMV_KERNEL(name, G, BB, decode)                                                  \
    static void name(const float *x, const unsigned char *const wrow[GEMV_ROWS], int k,   \
                     float out[GEMV_ROWS]) {                                              \
        cs_v8 acc0 = cs_v8_zero(), acc1 = acc0, acc2 = acc0, acc3 = acc0;                 \
        size_t group_bytes = (size_t)(k / (G)) * (BB) * GEMV_ROWS;                        \
        for (int b = 0; b < k / (G); b++) {                                               \
            for (int r = 0; r < GEMV_ROWS; r++) GEMV_PREFETCH(wrow[r] + (size_t)b * (BB), group_bytes); \
            for (int s = 0; s < (G) / 32; s++) {                                          \
                const float *xb = x + b * (G) + 32 * s;                                   \
                GEMV_STEP(0, BB, decode);                                                 \
                GEMV_STEP(1, BB, decode);                                                 \
                GEMV_STEP(2, BB, decode);                                                 \
                GEMV_STEP(3, BB, decode);                                                 \
            }                                                                             \
        }                                                                                 \
        out[0] = cs_v8_sum(acc0);                                                         \
        out[1] = cs_v8_sum(acc1);                                                         \
        out[2] = cs_v8_sum(acc2);                                                         \
        out[3] = cs_v8_sum(acc3);                                                         \
    }
GEMV_KERNEL(gemv4_q4_1, 32, CS_I4_BLOCK_BYTES(32), cs_q4_1_sub_v8)
GEMV_KERNEL(gemv4_q4_0, 32, sizeof(cs_block_q4_0), cs_q4_0_sub_v8)
GEMV_KERNEL(gemv4_q8_0, 32, CS_I8_BLOCK_BYTES(32), cs_i8_sub_v8)
GEMV_KERNEL(gemv4_i4_g32, 32, CS_I4F_BLOCK_BYTES(32), cs_i4_sub_v8)
GEMV_KERNEL(gemv4_i4_g64, 64, CS_I4_BLOCK_BYTES(64), cs_i4_sub_v8)
GEMV_KERNEL(gemv4_i4_g128, 128, CS_I4_BLOCK_BYTES(128), cs_i4_sub_v8)
GEMV_KERNEL(gemv4_i8_g64, 64, CS_I8_BLOCK_BYTES(64), cs_i8_sub_v8)
GEMV_KERNEL(gemv4_i8_g128, 128, CS_I8_BLOCK_BYTES(128), cs_i8_sub_v8)
GEMV_KERNEL(gemv4_f16, 32, 64, cs_f16_sub_v8)   // 16-bit floats in runs of 32: k % 32 == 0 only
GEMV_KERNEL(gemv4_bf16, 32, 64, cs_bf16_sub_v8)

typedef void (*gemv_fn)(const float *, const unsigned char *const *, int, float *);

// The register-decoding kernel for a weight type; NULL for F32 (the tiled path reads its rows
// in place at any m: there is nothing to decode).
static gemv_fn gemv_kernel(cs_dtype t) {
    switch (t) {
    case CS_DTYPE_Q4_1: return gemv4_q4_1;
    case CS_DTYPE_Q4_0: return gemv4_q4_0;
    case CS_DTYPE_Q8_0: return gemv4_q8_0;
    case CS_DTYPE_I4_G32: return gemv4_i4_g32;
    case CS_DTYPE_I4_G64: return gemv4_i4_g64;
    case CS_DTYPE_I4_G128: return gemv4_i4_g128;
    case CS_DTYPE_I8_G64: return gemv4_i8_g64;
    case CS_DTYPE_I8_G128: return gemv4_i8_g128;
    case CS_DTYPE_F16: return gemv4_f16;
    case CS_DTYPE_BF16: return gemv4_bf16;
    case CS_DTYPE_F32:
    case CS_DTYPE_COUNT: break;
    }
    return NULL;
}

static void gemv_task(matmul_job *j, int n0, int nn) {
    gemv_fn kernel = gemv_kernel(j->wt);
    for (int row0 = n0; row0 < n0 + nn; row0 += GEMV_ROWS) {
        int rows = n0 + nn - row0 < GEMV_ROWS ? n0 + nn - row0 : GEMV_ROWS;
        const unsigned char *wrow[GEMV_ROWS];
        for (int r = 0; r < GEMV_ROWS; r++) // a short group repeats its last row
            wrow[r] = j->w + (size_t)(row0 + (r < rows ? r : rows - 1)) * j->w_row_bytes;
        for (int a = 0; a < j->m; a++) {
            float o[GEMV_ROWS];
            kernel(j->x + (size_t)a * j->k, wrow, j->k, o);
            for (int r = 0; r < rows; r++) {
                if (j->bias) o[r] += j->bias[row0 + r];
                j->out[(size_t)a * j->n + row0 + r] = o[r];
            }
        }
    }
}

static bool use_gemv(cs_dtype t, int m, int k) {
    bool runs_of_32 = cs_dtype_block_elems(t) > 1 || k % 32 == 0; // the 16-bit floats' kernels
    return m <= GEMV_MAX_M && gemv_kernel(t) != NULL && runs_of_32;
}

static void matmul_task(void *ctx, int task, int thread) {
    matmul_job *j = ctx;
    int n0 = task * TILE_N, nn = j->n - n0 < TILE_N ? j->n - n0 : TILE_N;
    if (use_gemv(j->wt, j->m, j->k)) {
        gemv_task(j, n0, nn);
        return;
    }
    const float *wbuf;
    if (j->wt == CS_DTYPE_F32 && (uintptr_t)j->w % sizeof(float) == 0) { // already fp32 rows: read in place
        wbuf = (const float *)(const void *)(j->w + (size_t)n0 * j->w_row_bytes);
    } else {
        float *buf = j->scratch + (size_t)thread * TILE_N * j->k;
        for (int c = 0; c < nn; c++)
            cs_cpu_dequant_row(j->wt, j->w + (size_t)(n0 + c) * j->w_row_bytes, buf + (size_t)c * j->k, j->k);
        wbuf = buf;
    }
    int m2 = j->m & ~1, c4 = nn & ~3;
    for (int r = 0; r < j->m; r += 2) {
        for (int c = 0; c < nn; c += 4) {
            if (r < m2 && c < c4) {
                float o[2][4];
                micro_2x4(j->x + (size_t)r * j->k, j->k, wbuf + (size_t)c * j->k, j->k, j->k, o);
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 4; b++) j->out[(size_t)(r + a) * j->n + n0 + c + b] = o[a][b];
                continue;
            }
            for (int a = r; a < r + 2 && a < j->m; a++)
                for (int b = c; b < c + 4 && b < nn; b++)
                    j->out[(size_t)a * j->n + n0 + b] =
                        cs_dot_f32(j->x + (size_t)a * j->k, wbuf + (size_t)b * j->k, j->k);
        }
    }
    if (j->bias)
        for (int a = 0; a < j->m; a++)
            for (int b = 0; b < nn; b++) j->out[(size_t)a * j->n + n0 + b] += j->bias[n0 + b];
}

size_t cs_cpu_matmul_scratch(int k, int n_threads) {
    return (size_t)n_threads * TILE_N * (size_t)k * sizeof(float);
}

void cs_cpu_matmul(float *out, const float *x, const void *w, cs_dtype wt, const float *bias,
                   int m, int n, int k, float *scratch, cs_pool *pool) {
    CS_ASSERT(m >= 0 && n > 0 && k > 0 && k % cs_dtype_block_elems(wt) == 0);
    size_t row_bytes;
    CS_ASSERT(cs_dtype_row_bytes(wt, k, &row_bytes));
    if (m == 0) return;
    matmul_job j = {out, x, w, row_bytes, wt, bias, m, n, k, scratch};
    cs_pool_run(pool, matmul_task, &j, (n + TILE_N - 1) / TILE_N);
}
