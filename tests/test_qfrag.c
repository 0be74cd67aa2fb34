// The int4 / int8 matmul's lane arithmetic (kernels/qfrag.h, the code the CUDA kernels run)
// replayed on the CPU, warp by warp, against the packed matrix's reference weights:
//   - every A fragment element, placed where PTX's mma.m16n8k16 layout puts it and mapped to k
//     as qfrag.h says, is cs_qpack_weight's bf16(s q + m) bit for bit, and padding is 0;
//   - out = x w^T computed as the kernel does (per chunk, per k16 step, B from the lane's 16
//     activations at qf_x_col), with mma's semantics spelt out (C[g][n] += sum over the 16
//     k-rows of A x B), equals float64 sums over the reference weights;
//   - the host emulation of the packed bf16 FMA rounds once (a case double rounding breaks).
// Covers both widths, every group, n off the 16-row tile, k off 64.
#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "common/rng.h"
#include "kernels/qfrag.h"
#include "kernels/qpack.h"
#include "test_util.h"

static uint64_t rng = 0xf00dfeedull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static float rand_unit(void) { return (float)((int)(next_u32() % 2001) - 1000) / 1000.0f; }

typedef struct mat {
    cs_qpack_dims d;
    uint32_t *pc, *ps;
} mat;

static void make(mat *q, int bits, int group, int64_t n, int64_t k) {
    CS_ASSERT(cs_qpack_dims_of(bits, group, n, k, &q->d));
    int64_t ng = k / group;
    uint8_t *codes = malloc((size_t)(n * k));
    float *s = malloc(sizeof(float) * (size_t)(n * ng)), *m = malloc(sizeof(float) * (size_t)(n * ng));
    for (int64_t i = 0; i < n * k; i++) codes[i] = (uint8_t)next_u32();
    if (bits == 4)
        for (int64_t i = 0; i < n * k; i++) codes[i] &= 15;
    for (int64_t i = 0; i < n * ng; i++) {
        s[i] = 0.01f * (1.0f + 0.5f * rand_unit());
        m[i] = bits == 4 ? -0.1f * (1.0f + 0.3f * rand_unit()) : 0.0f;
    }
    q->pc = malloc(q->d.code_words * 4);
    q->ps = malloc(q->d.scale_words * 4);
    cs_qpack(&q->d, codes, s, m, q->pc, q->ps);
    free(codes), free(s), free(m);
}

// The lane's fragments for chunk c of row tile rt, as qmatmul.cu's load_chunk + qf_frags.
static void lane_frags(const mat *q, int rt, int c, int lane, uint32_t af[4][4]) {
    const uint32_t *w = q->pc + qf_code_index(rt, c, lane, (int)q->d.n_chunks, q->d.bits);
    size_t si = qf_scale_index(rt, c, lane, (int)q->d.n_groups, q->d.group);
    qf_frags(q->d.bits, af, w, q->ps[si], q->ps[si + 8]);
}

// PTX m16n8k16 A layout: (register r, half h) of lane (g, t) -> tile row and column.
static void a_pos(int lane, int r, int h, int *row, int *col) {
    int g = lane / 4, t = lane % 4;
    *row = g + (r & 1) * 8;
    *col = 2 * t + h + (r >> 1) * 8;
}

// qfrag.h's k of tile column col in step j of chunk c (the permutation both operands share).
static int64_t k_of(int c, int j, int col) {
    int t = (col % 8) / 2, i = col % 2;
    return (int64_t)c * 64 + 16 * t + 4 * j + (col >= 8 ? 2 : 0) + i;
}

static void check_fragments(const mat *q) {
    long bad = 0;
    for (int rt = 0; rt < (int)q->d.n_tiles; rt++)
        for (int c = 0; c < (int)q->d.n_chunks; c++)
            for (int lane = 0; lane < 32; lane++) {
                uint32_t af[4][4];
                lane_frags(q, rt, c, lane, af);
                for (int j = 0; j < 4; j++)
                    for (int r = 0; r < 4; r++)
                        for (int h = 0; h < 2; h++) {
                            int row, col;
                            a_pos(lane, r, h, &row, &col);
                            int64_t n = (int64_t)rt * 16 + row, k = k_of(c, j, col);
                            float got = qf_bf16_f((uint16_t)(af[j][r] >> 16 * h));
                            float want = n < q->d.n && k < q->d.k ? cs_qpack_weight(&q->d, q->pc, q->ps, n, k) : 0.0f;
                            if (memcmp(&got, &want, 4) != 0 && !(got == 0 && want == 0)) bad++;
                        }
            }
    TEST_CONDF(bad == 0, "int%d g%d %lldx%lld: %ld fragment elements differ from the reference weights", q->d.bits,
               q->d.group, (long long)q->d.n, (long long)q->d.k, bad);
}

// One token's out = x w^T the kernel's way, B included, with mma's sum written out.
static void check_matmul(const mat *q) {
    int64_t n = q->d.n, k = q->d.k;
    float *x = malloc(sizeof(float) * (size_t)k);
    uint16_t *xb = calloc((size_t)q->d.k_pad, 2); // the staged chunk is zero past k
    for (int64_t i = 0; i < k; i++) {
        xb[i] = qf_bf16_rne(rand_unit());
        x[i] = qf_bf16_f(xb[i]);
    }
    long bad = 0;
    for (int rt = 0; rt < (int)q->d.n_tiles; rt++) {
        double acc[16] = {0}; // C[row][token 0]
        for (int c = 0; c < (int)q->d.n_chunks; c++) {
            uint32_t af[32][4][4], bw[32][8];
            for (int lane = 0; lane < 32; lane++) {
                lane_frags(q, rt, c, lane, af[lane]);
                // token g = lane / 4: only token 0 is real here, the others' B are zeros
                for (int i = 0; i < 8; i++) {
                    int col = qf_x_col(c, lane) + 2 * i;
                    bw[lane][i] = lane / 4 ? 0 : (uint32_t)xb[col] | (uint32_t)xb[col + 1] << 16;
                }
            }
            for (int j = 0; j < 4; j++) {
                // A (16 x 16) and B (16 x 8) as the mma sees them
                float A[16][16], B[16][8];
                for (int lane = 0; lane < 32; lane++) {
                    for (int r = 0; r < 4; r++)
                        for (int h = 0; h < 2; h++) {
                            int row, col;
                            a_pos(lane, r, h, &row, &col);
                            A[row][col] = qf_bf16_f((uint16_t)(af[lane][j][r] >> 16 * h));
                        }
                    // b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]: the kernel passes words 2j, 2j+1
                    int g = lane / 4, t = lane % 4;
                    uint32_t b0 = bw[lane][2 * j], b1 = bw[lane][2 * j + 1];
                    B[2 * t][g] = qf_bf16_f((uint16_t)b0), B[2 * t + 1][g] = qf_bf16_f((uint16_t)(b0 >> 16));
                    B[2 * t + 8][g] = qf_bf16_f((uint16_t)b1), B[2 * t + 9][g] = qf_bf16_f((uint16_t)(b1 >> 16));
                }
                for (int row = 0; row < 16; row++)
                    for (int kk = 0; kk < 16; kk++) acc[row] += (double)A[row][kk] * B[kk][0];
            }
        }
        for (int row = 0; row < 16; row++) {
            int64_t r = (int64_t)rt * 16 + row;
            if (r >= n) continue;
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                double p = (double)cs_qpack_weight(&q->d, q->pc, q->ps, r, i) * x[i];
                ref += p;
                mag += fabs(p);
            }
            if (!(fabs(acc[row] - ref) <= 1e-12 * mag + 1e-12)) bad++;
        }
    }
    TEST_CONDF(bad == 0, "int%d g%d %lldx%lld: %ld emulated outputs differ from the reference", q->d.bits, q->d.group,
               (long long)n, (long long)k, bad);
    free(x), free(xb);
}

int main(void) {
    // qf_bf16x2_fma rounds once: 7 * 37 - 2^-20 is just below 259, the tie between 258 and 260;
    // rounded to float first it would be 259 exactly, and then go to 260 (ties to even)
    TEST_COND(qf_bf16_rne(1.0 + 0x1p-8) == 0x3F80);           // a tie: to even
    TEST_COND(qf_bf16_rne(1.0 + 0x1p-8 + 0x1p-30) == 0x3F81); // above the tie: up
    TEST_COND(qf_bf16_rne(-3.0) == 0xC040 && qf_bf16_rne(0.0) == 0 && qf_bf16_rne(-0.0) == 0x8000);
    TEST_COND(qf_bf16x2_fma(0x40E040E0u, 0x42144214u, 0xB580B580u) == 0x43814381u);
    // the byte permute the int8 path uses
    TEST_COND(qf_prmt(0x44332211u, 0x4B000000u, 0x7442u) == 0x4B000033u);
    TEST_COND(qf_prmt(0xAABBCCDDu, 0, 0x1010u) == 0xCCDDCCDDu && qf_prmt(0xAABBCCDDu, 0, 0x3232u) == 0xAABBAABBu);
    const int64_t shapes[][2] = {{16, 64}, {37, 96}, {50, 256}, {33, 384}};
    for (int bits = 4; bits <= 8; bits += 4)
        for (int group = 32; group <= 128; group *= 2)
            for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
                int64_t k = shapes[i][1] / group * group;
                if (k == 0) continue;
                mat q;
                make(&q, bits, group, shapes[i][0], k);
                check_fragments(&q);
                check_matmul(&q);
                free(q.pc), free(q.ps);
            }
    return TEST_REPORT();
}
