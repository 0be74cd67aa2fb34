// out (m, n) = x (m, k) @ W^T (+ bias), W (n, k) stored as any cs_dtype, fp32 accumulation.
//
// Each task owns TILE_N weight rows: it dequantises them once into fp32 scratch, then runs a
// 4x4 register-tiled microkernel over all m rows of x, so a weight byte is read once per
// call and an x row once per TILE_N weight rows. Every output element is computed by the
// same sequence of 8-wide FMAs over k in order, whatever m or the tile it falls in, so a
// token's result does not depend on what else is in the batch (batch invariance).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/assert.h"
#include "../kernels.h"
#include "cpu_simd.h"

#define TILE_N 16

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

// Dot products of 4 x rows with 4 weight rows: acc layout out[r][c] for x row r, w row c.
static void micro_4x4(const float *x, int ldx, const float *w, int ldw, int k, float out[4][4]) {
    cs_v8 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = cs_v8_zero();
    int k8 = k & ~7;
    for (int i = 0; i < k8; i += 8) {
        cs_v8 xv[4], wv[4];
        for (int r = 0; r < 4; r++) xv[r] = cs_v8_load(x + (size_t)r * ldx + i);
        for (int c = 0; c < 4; c++) wv[c] = cs_v8_load(w + (size_t)c * ldw + i);
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++) acc[r][c] = cs_v8_fma(xv[r], wv[c], acc[r][c]);
    }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            float s = cs_v8_sum(acc[r][c]);
            for (int i = k8; i < k; i++) s = fmaf(x[(size_t)r * ldx + i], w[(size_t)c * ldw + i], s);
            out[r][c] = s;
        }
}

// One x row against one weight row: the same arithmetic as one cell of micro_4x4.
static float dot_1x1(const float *x, const float *w, int k) {
    cs_v8 acc = cs_v8_zero();
    int k8 = k & ~7;
    for (int i = 0; i < k8; i += 8) acc = cs_v8_fma(cs_v8_load(x + i), cs_v8_load(w + i), acc);
    float s = cs_v8_sum(acc);
    for (int i = k8; i < k; i++) s = fmaf(x[i], w[i], s);
    return s;
}

static void matmul_task(void *ctx, int task, int thread) {
    matmul_job *j = ctx;
    int n0 = task * TILE_N, nn = j->n - n0 < TILE_N ? j->n - n0 : TILE_N;
    float *wbuf = j->scratch + (size_t)thread * TILE_N * j->k;
    for (int c = 0; c < nn; c++)
        cs_cpu_dequant_row(j->wt, j->w + (size_t)(n0 + c) * j->w_row_bytes, wbuf + (size_t)c * j->k, j->k);
    int m4 = j->m & ~3, c4 = nn & ~3;
    for (int r = 0; r < j->m; r += 4) {
        for (int c = 0; c < nn; c += 4) {
            if (r < m4 && c < c4) {
                float o[4][4];
                micro_4x4(j->x + (size_t)r * j->k, j->k, wbuf + (size_t)c * j->k, j->k, j->k, o);
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) j->out[(size_t)(r + a) * j->n + n0 + c + b] = o[a][b];
                continue;
            }
            for (int a = r; a < r + 4 && a < j->m; a++)
                for (int b = c; b < c + 4 && b < nn; b++)
                    j->out[(size_t)a * j->n + n0 + b] =
                        dot_1x1(j->x + (size_t)a * j->k, wbuf + (size_t)b * j->k, j->k);
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
