// Load-time quantisation (cs_cpu_quantize_row) and the int4 / int8 group types: the codes are
// the nearest the block can represent, the error is within d/2 plus what fp16 scales cost
// (fp32 ones for I4_G64 / I4_G128), quantising what was dequantised changes nothing (the
// codes, for I4_Gg), the layouts agree with Q4_1 / Q8_0 at g = 32, and matmul over each type matches a float64 reference with every m giving the
// same bits.
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/assert.h"
#include "common/thread_pool.h"
#include "kernels/kernels.h"
#include "test_util.h"

static uint64_t rng = 0x452821e638d01377ull;
static float frand(void) { // uniform in [-1, 1)
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static float urand(void) { return 0.5f * (frand() + 1.0f); } // [0, 1)

static const cs_dtype QTYPES[] = {CS_DTYPE_Q4_1, CS_DTYPE_I4_G32, CS_DTYPE_I4_G64, CS_DTYPE_I4_G128,
                                  CS_DTYPE_Q8_0, CS_DTYPE_I8_G64, CS_DTYPE_I8_G128};
#define N_QTYPES (int)(sizeof QTYPES / sizeof QTYPES[0])

static bool is_int4(cs_dtype t) {
    return t == CS_DTYPE_Q4_1 || t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128;
}
// I4_G32 / I4_G64 / I4_G128: int4 with fp32 d and m (dtype.h).
static bool is_i4_f32(cs_dtype t) { return t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128; }

// Element i of a quantised row, read by hand from the bytes as dtype.h describes them: its
// code, and its group's d and m (m = 0 for int8).
static int code_at(cs_dtype t, const unsigned char *row, int64_t i, float *d, float *m) {
    int g = cs_dtype_group(t), j = (int)(i % g);
    const unsigned char *p = row + (size_t)(i / g) * (size_t)cs_dtype_block_bytes(t);
    if (is_i4_f32(t)) {
        memcpy(d, p, 4);
        memcpy(m, p + 4, 4);
        uint8_t b = p[8 + 16 * (j / 32) + j % 16];
        return j % 32 < 16 ? b & 0x0f : b >> 4;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    *d = cs_fp16_to_f32(h);
    *m = 0;
    if (!is_int4(t)) return (int8_t)p[2 + j];
    memcpy(&h, p + 2, 2);
    *m = cs_fp16_to_f32(h);
    uint8_t b = p[4 + 16 * (j / 32) + j % 16]; // sub-block j / 32, Q4_1 nibble order inside
    return j % 32 < 16 ? b & 0x0f : b >> 4;
}

// The value the format defines for code q: the product, then the sum, each rounded to fp32.
static float grid(cs_dtype t, float d, float m, int q) { return is_int4(t) ? d * (float)q + m : d * (float)q; }

// Group contents that stress the scales. Never all zeros. Magnitudes stay within the
// quantiser's contract (|w| <= 65504 suffices); +-65504 themselves are used.
enum { K_UNIFORM, K_CONST, K_NEG, K_OUTLIER, K_OFFSET, K_EXTREME, K_TINY, N_KINDS };
static void fill_group(float *x, int g, int kind) {
    float scale = ldexpf(1.0f, (int)(urand() * 16) - 10); // 2^-10 .. 2^5
    switch (kind) {
    case K_UNIFORM:
        for (int i = 0; i < g; i++) x[i] = frand() * scale;
        break;
    case K_CONST: { // d = 0 for int4
        float c = (frand() < 0 ? -1 : 1) * (0.1f + urand()) * scale;
        for (int i = 0; i < g; i++) x[i] = c;
        break;
    }
    case K_NEG:
        for (int i = 0; i < g; i++) x[i] = -(0.25f + urand()) * scale;
        break;
    case K_OUTLIER: // huge range: one large weight among small ones
        for (int i = 0; i < g; i++) x[i] = frand() * 1e-3f;
        x[(int)(urand() * g)] = (frand() < 0 ? -1 : 1) * (1000.0f + urand() * 30000.0f);
        break;
    case K_OFFSET: // narrow range far from zero: m's fp16 rounding is several d
        for (int i = 0; i < g; i++) x[i] = 3.0f + 0.01f * frand();
        break;
    case K_EXTREME: // the edge of fp16 (dequantised, the top can round past 65504)
        for (int i = 0; i < g; i++) x[i] = frand() * 65504.0f;
        x[(int)(urand() * g / 2)] = -65504.0f;
        x[g / 2 + (int)(urand() * g / 2)] = 65504.0f;
        break;
    case K_TINY: // fp16-subnormal scales
        for (int i = 0; i < g; i++) x[i] = frand() * 1e-6f;
        break;
    }
}

static void fill_row(float *x, int64_t n, int g) {
    for (int64_t b = 0; b < n / g; b++) fill_group(x + b * g, g, (int)(urand() * N_KINDS));
}

static void *quantize(cs_dtype t, const float *x, int rows, int64_t n, size_t *row_bytes) {
    CS_ASSERT(cs_dtype_row_bytes(t, n, row_bytes));
    unsigned char *q = malloc(*row_bytes * (size_t)rows);
    for (int r = 0; r < rows; r++) cs_cpu_quantize_row(t, x + r * n, q + (size_t)r * *row_bytes, n);
    return q;
}

static void dequantize(cs_dtype t, const void *q, size_t row_bytes, int rows, int64_t n, float *y) {
    for (int r = 0; r < rows; r++) cs_cpu_dequant_row(t, (const unsigned char *)q + (size_t)r * row_bytes, y + r * n, n);
}

static void test_types(void) {
    TEST_COND(cs_dtype_int4(32) == CS_DTYPE_Q4_1 && cs_dtype_int4(64) == CS_DTYPE_I4_G64 &&
              cs_dtype_int4(128) == CS_DTYPE_I4_G128 && cs_dtype_int4(16) == CS_DTYPE_COUNT);
    TEST_COND(cs_dtype_int8(32) == CS_DTYPE_Q8_0 && cs_dtype_int8(64) == CS_DTYPE_I8_G64 &&
              cs_dtype_int8(128) == CS_DTYPE_I8_G128 && cs_dtype_int8(256) == CS_DTYPE_COUNT);
    TEST_COND(cs_dtype_group(CS_DTYPE_Q4_0) == 32 && cs_dtype_group(CS_DTYPE_I8_G128) == 128 &&
              cs_dtype_group(CS_DTYPE_BF16) == 0 && cs_dtype_group(CS_DTYPE_F32) == 0);
    TEST_COND(!strcmp(cs_dtype_name(CS_DTYPE_I4_G64), "I4_G64") && !strcmp(cs_dtype_name(CS_DTYPE_I8_G128), "I8_G128"));
    size_t n;
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_I4_G64, 192, &n) && n == 3 * 40);
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_I4_G32, 96, &n) && n == 3 * 24 && cs_dtype_group(CS_DTYPE_I4_G32) == 32);
    TEST_COND(cs_dtype_int4_exact(32) == CS_DTYPE_I4_G32 && cs_dtype_int4_exact(64) == CS_DTYPE_I4_G64 &&
              cs_dtype_int4_exact(128) == CS_DTYPE_I4_G128 && cs_dtype_int4_exact(48) == CS_DTYPE_COUNT &&
              !strcmp(cs_dtype_name(CS_DTYPE_I4_G32), "I4_G32"));
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_I4_G128, 384, &n) && n == 3 * 72);
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_Q4_1, 64, &n) && n == 2 * 20);
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_I8_G64, 128, &n) && n == 2 * 66);
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_I8_G128, 128, &n) && n == 130);
    TEST_COND(!cs_dtype_row_bytes(CS_DTYPE_I4_G128, 192, &n) && !cs_dtype_row_bytes(CS_DTYPE_I8_G64, 96, &n));
}

// Blocks written by hand, values computed by hand: the documented layouts.
static void test_layout(void) {
    unsigned char b4[40];
    float df = 0.25f, mf = -1.0f;
    memcpy(b4, &df, 4);
    memcpy(b4 + 4, &mf, 4);
    for (int j = 0; j < 16; j++) {
        b4[8 + j] = (uint8_t)(j | (3 << 4));   // sub-block 0: weights j = j, j+16 = 3
        b4[24 + j] = (uint8_t)(15 | (j << 4)); // sub-block 1: weights 32+j = 15, 48+j = j
    }
    float y[128];
    cs_cpu_dequant_row(CS_DTYPE_I4_G64, b4, y, 64);
    TEST_COND(y[0] == -1.0f && y[15] == 2.75f && y[16] == -0.25f && y[31] == -0.25f);
    TEST_COND(y[32] == 2.75f && y[47] == 2.75f && y[48] == -1.0f && y[63] == 2.75f);
    // An AWQ / GPTQ group, w = s * (q - z), as d = s, m = -z * s: with s = 1 + 2^-10 (fp16)
    // and z = 13, m = -13.0126953125 needs 15 significant bits, which fp16 does not have;
    // the fp32 header keeps it, and every d * q + m is s * (q - z) exactly.
    df = 1.0009765625f;
    mf = -13.0f * df;
    TEST_COND(cs_fp16_to_f32(cs_f32_to_fp16(mf)) != mf);
    memcpy(b4, &df, 4);
    memcpy(b4 + 4, &mf, 4);
    cs_cpu_dequant_row(CS_DTYPE_I4_G64, b4, y, 64);
    TEST_COND(y[0] == df * -13.0f && y[15] == df * 2.0f && y[16] == df * -10.0f && y[13] == 0.0f);
    TEST_COND(y[32] == df * 2.0f && y[48] == df * -13.0f && y[63] == df * 2.0f);
    unsigned char b8[130];
    uint16_t d = 0xc000; // -2
    memcpy(b8, &d, 2);
    for (int j = 0; j < 128; j++) b8[2 + j] = (unsigned char)(int8_t)(j - 64);
    cs_cpu_dequant_row(CS_DTYPE_I8_G128, b8, y, 128);
    TEST_COND(y[0] == 128.0f && y[64] == 0.0f && y[127] == -126.0f);
}

// Whether quantising x (n <= 128) aborts, run in a child process.
static bool aborts(cs_dtype t, const float *x, int n) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        CS_ASSERT(freopen("/dev/null", "w", stderr)); // the expected assertion message
        unsigned char buf[130];
        cs_cpu_quantize_row(t, x, buf, n);
        _exit(0);
    }
    int st = 0;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

// The contract's edges: non-finite values and scales past fp16 (I4_Gg: past fp32) abort;
// values past 65504 are fine where the scales still fit.
static void test_contract(void) {
    float x[128];
    for (int i = 0; i < 128; i++) x[i] = frand();
    x[7] = NAN;
    TEST_COND(aborts(CS_DTYPE_Q8_0, x, 32) && aborts(CS_DTYPE_I4_G64, x, 64));
    x[7] = -INFINITY;
    TEST_COND(aborts(CS_DTYPE_I8_G128, x, 128) && aborts(CS_DTYPE_Q4_1, x, 32) && aborts(CS_DTYPE_I4_G128, x, 128));
    x[7] = -65519.0f; // still rounds to a finite fp16 m (-65504)
    TEST_COND(!aborts(CS_DTYPE_Q4_1, x, 32) && !aborts(CS_DTYPE_I4_G64, x, 64));
    x[7] = -65600.0f; // Q4_1: m does not fit fp16; I4_Gg's fp32 m does; int8: 65600 / 127 fits
    TEST_COND(aborts(CS_DTYPE_Q4_1, x, 32) && !aborts(CS_DTYPE_I4_G128, x, 128) && !aborts(CS_DTYPE_I8_G64, x, 64));
    x[7] = 9e5f; // 9e5 / 127 and (9e5 + 1) / 15 fit
    TEST_COND(!aborts(CS_DTYPE_I8_G64, x, 64) && !aborts(CS_DTYPE_I4_G64, x, 64));
    x[7] = 1e7f; // neither fits fp16; (1e7 + 1) / 15 fits fp32
    TEST_COND(aborts(CS_DTYPE_I8_G64, x, 64) && aborts(CS_DTYPE_Q4_1, x, 32) && !aborts(CS_DTYPE_I4_G64, x, 64));
    x[7] = 3e38f, x[8] = -3e38f; // max - min overflows fp32
    TEST_COND(aborts(CS_DTYPE_I4_G64, x, 64) && aborts(CS_DTYPE_I4_G128, x, 128));
}

// Quantise then dequantise random rows of every kind of group. Per element:
// - the dequantiser computes exactly the format's value of the stored code;
// - the code is the nearest grid point the block can represent, up to the fp32 rounding of
//   (w - m) / d inside the quantiser (a wrong pick needs the quotient within ~2^-18 of a
//   half-integer, and then costs at most ~2^-16 d);
// - error <= d/2 + the cost of fp16 scales. On the grid's span the nearest point is within
//   d/2. Outside it: int4 loses |m - min| + 15 |d - (max-min)/15|, int8 loses
//   127 |d - absmax/127|; fp16 rounding is 2^-11 relative for normal numbers and 2^-25
//   absolute for subnormal ones, so int4 adds 2^-11 (|min| + max - min) + 16 * 2^-25 and
//   int8 2^-11 absmax + 127 * 2^-25. We double both terms to cover the fp32 roundings of
//   (max - min) / 15, absmax / 127 and of the grid values themselves.
//   I4_G64 / I4_G128 keep m = min exactly and d in fp32: what remains are the fp32
//   roundings of max - min, of / 15, of d * q and of + m, each 2^-24 relative to at most
//   |min| + max - min, so 2^-22 (|min| + max - min); doubled, 2^-21.
static void test_roundtrip(void) {
    const int rows = 48;
    const int64_t n = 1536;
    float *x = malloc(sizeof(float) * rows * n), *y = malloc(sizeof(float) * rows * n);
    for (int ti = 0; ti < N_QTYPES; ti++) {
        cs_dtype t = QTYPES[ti];
        int g = cs_dtype_group(t);
        fill_row(x, rows * n, g);
        size_t rb;
        unsigned char *q = quantize(t, x, rows, n, &rb);
        dequantize(t, q, rb, rows, n, y);
        int64_t not_exact = 0, not_nearest = 0, over = 0, bad_code = 0;
        double worst = 0; // error / bound
        for (int r = 0; r < rows; r++)
            for (int64_t b = 0; b < n / g; b++) {
                const float *xg = x + r * n + b * g;
                float mn = xg[0], mx = xg[0], amax = 0;
                for (int i = 0; i < g; i++) {
                    mn = fminf(mn, xg[i]);
                    mx = fmaxf(mx, xg[i]);
                    amax = fmaxf(amax, fabsf(xg[i]));
                }
                for (int i = 0; i < g; i++) {
                    int64_t e = b * g + i;
                    float d, m, w = xg[i], got = y[r * n + e];
                    int c = code_at(t, q + (size_t)r * rb, e, &d, &m);
                    if (!is_int4(t) && c == -128) bad_code++;
                    float want = grid(t, d, m, c);
                    if (memcmp(&want, &got, 4)) not_exact++;
                    double err = fabs((double)w - got), best = INFINITY;
                    for (int k = is_int4(t) ? 0 : -127; k <= (is_int4(t) ? 15 : 127); k++)
                        best = fmin(best, fabs((double)w - grid(t, d, m, k)));
                    if (err > best + ldexp(d, -16) + ldexp(fabs(w) + fabs(m), -22)) not_nearest++;
                    double tol = is_i4_f32(t) ? d / 2.0 + ldexp(fabs(mn) + ((double)mx - mn), -21)
                                 : is_int4(t) ? d / 2.0 + ldexp(fabs(mn) + (mx - mn), -10) + ldexp(1, -20)
                                              : d / 2.0 + ldexp(amax, -10) + ldexp(1, -17);
                    if (err > tol) {
                        if (over++ < 5)
                            fprintf(stderr, "%s row %d elem %lld: w %g got %g err %g tol %g (d %g m %g)\n",
                                    cs_dtype_name(t), r, (long long)e, w, got, err, tol, d, m);
                    }
                    worst = err / tol > worst ? err / tol : worst;
                }
            }
        TEST_CONDF(not_exact == 0, "%s: %lld dequantised values differ from the format's", cs_dtype_name(t), (long long)not_exact);
        TEST_CONDF(not_nearest == 0, "%s: %lld codes are not the nearest", cs_dtype_name(t), (long long)not_nearest);
        TEST_CONDF(over == 0, "%s: %lld errors over the bound", cs_dtype_name(t), (long long)over);
        TEST_CONDF(bad_code == 0, "%s: %lld int8 codes of -128", cs_dtype_name(t), (long long)bad_code);
        printf("%-8s quantisation error at most %.3f of the bound\n", cs_dtype_name(t), worst);
        free(q);
    }
    free(x);
    free(y);
}

// Quantising a dequantised row reproduces it bit for bit, for every group whose codes span
// the full range (int4: 0 and 15, int8: +-127) or that has d == 0: its min and max (absmax)
// are grid ends, so the recomputed d and m are the stored ones, and d * q (+ m) is exact in
// fp32, so each code comes back. Groups that do not span the range (m's fp16 rounding worth
// more than d/2, as in K_OFFSET; fp16-subnormal d) get another grid, and are not claimed.
// I4_G64 / I4_G128 keep d and m in fp32, where d * q + m is rounded, so the recomputed
// max - min, and d, may move by an ulp: for them the claim is that every code and m come
// back, and each value within 2^-21 (|m| + 15 d).
static void test_idempotent(void) {
    const int rows = 48;
    const int64_t n = 1536;
    float *x = malloc(sizeof(float) * rows * n), *y = malloc(sizeof(float) * rows * n), *z = malloc(sizeof(float) * rows * n);
    for (int ti = 0; ti < N_QTYPES; ti++) {
        cs_dtype t = QTYPES[ti];
        int g = cs_dtype_group(t);
        fill_row(x, rows * n, g);
        size_t rb;
        unsigned char *q1 = quantize(t, x, rows, n, &rb);
        dequantize(t, q1, rb, rows, n, y);
        unsigned char *q2 = quantize(t, y, rows, n, &rb);
        dequantize(t, q2, rb, rows, n, z);
        int64_t claimed = 0, groups = 0, differ = 0;
        for (int r = 0; r < rows; r++)
            for (int64_t b = 0; b < n / g; b++, groups++) {
                int lo = 127, hi = -127;
                float d, m;
                for (int i = 0; i < g; i++) {
                    int c = code_at(t, q1 + (size_t)r * rb, b * g + i, &d, &m);
                    lo = c < lo ? c : lo;
                    hi = c > hi ? c : hi;
                }
                bool full = d == 0 || (is_int4(t) ? lo == 0 && hi == 15 : hi == 127 || lo == -127);
                if (!full) continue;
                claimed++;
                if (!is_i4_f32(t)) {
                    if (memcmp(y + r * n + b * g, z + r * n + b * g, sizeof(float) * g)) differ++;
                    continue;
                }
                bool same = true;
                for (int i = 0; i < g; i++) {
                    float d2, m2, y1 = y[r * n + b * g + i], y2 = z[r * n + b * g + i];
                    int c1 = code_at(t, q1 + (size_t)r * rb, b * g + i, &d, &m);
                    int c2 = code_at(t, q2 + (size_t)r * rb, b * g + i, &d2, &m2);
                    same &= c1 == c2 && m == m2 && fabs((double)y1 - y2) <= ldexp(fabs(m) + 15.0 * d, -21);
                }
                differ += !same;
            }
        TEST_CONDF(differ == 0, "%s: %lld of %lld groups change when requantised", cs_dtype_name(t),
                   (long long)differ, (long long)claimed);
        // the claim covers all but the K_OFFSET / K_TINY groups (2 of 7 kinds)
        TEST_CONDF(claimed * 10 >= groups * 6, "%s: only %lld of %lld groups span the code range", cs_dtype_name(t),
                   (long long)claimed, (long long)groups);
        free(q1);
        free(q2);
    }
    free(x);
    free(y);
    free(z);
}

// I4_Gg is Q4_1 at g = 32 and I8_Gg is Q8_0: (1) each sub-block of a g-block, given its
// group's scale(s), is a valid Q4_1 / Q8_0 block with the same values (I4_Gg's fp32 d and m
// are first rounded to fp16 in place, so that Q4_1 can hold them); (2) when every 32-weight
// sub-block holds its group's min and max (int8: absmax), the Q4_1 / Q8_0 quantiser and the
// group quantiser pick the same scales and codes (int4: with a min and (max - min) / 15 that
// fp16 holds exactly, so Q4_1's rounding changes nothing).
static void test_matches_g32(void) {
    const int64_t n = 1536;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *y32 = malloc(sizeof(float) * n);
    for (int ti = 0; ti < N_QTYPES; ti++) {
        cs_dtype t = QTYPES[ti], t32 = is_int4(t) ? CS_DTYPE_Q4_1 : CS_DTYPE_Q8_0;
        int g = cs_dtype_group(t), bb = cs_dtype_block_bytes(t), bb32 = cs_dtype_block_bytes(t32);
        if (g == 32) continue;
        fill_row(x, n, g);
        size_t rb, rb32;
        unsigned char *q = quantize(t, x, 1, n, &rb);
        if (is_i4_f32(t))
            for (int64_t b = 0; b < n / g; b++)
                for (int h = 0; h < 2; h++) { // d, m to fp16 values, still stored as fp32
                    float v;
                    memcpy(&v, q + b * bb + 4 * h, 4);
                    v = cs_fp16_to_f32(cs_f32_to_fp16(v));
                    memcpy(q + b * bb + 4 * h, &v, 4);
                }
        cs_cpu_dequant_row(t, q, y, n);
        unsigned char *re = malloc(n / 32 * (size_t)bb32);
        int head = is_int4(t) ? 8 : 2, head32 = is_int4(t) ? 4 : 2; // d (and m)
        for (int64_t s = 0; s < n / 32; s++) {
            const unsigned char *blk = q + (size_t)(s / (g / 32)) * bb;
            if (is_int4(t))
                for (int h = 0; h < 2; h++) {
                    float v;
                    memcpy(&v, blk + 4 * h, 4);
                    uint16_t hv = cs_f32_to_fp16(v);
                    memcpy(re + s * bb32 + 2 * h, &hv, 2);
                }
            else
                memcpy(re + s * bb32, blk, head);
            memcpy(re + s * bb32 + head32, blk + head + (bb32 - head32) * (s % (g / 32)), bb32 - head32);
        }
        cs_cpu_dequant_row(t32, re, y32, n);
        TEST_CONDF(!memcmp(y, y32, sizeof(float) * n), "%s: sub-blocks read as %s differ", cs_dtype_name(t), cs_dtype_name(t32));
        free(re);
        free(q);

        for (int64_t b = 0; b < n / g; b++) { // random groups, then plant the extremes
            float lo = -(0.5f + urand()), hi = 0.5f + urand();
            if (is_int4(t)) { // lo and d = (hi - lo) / 15 short dyadic fractions: fp16-exact
                lo = -(float)(32 + (int)(urand() * 64)) / 64.0f;
                hi = lo + 15.0f * (float)(16 + (int)(urand() * 32)) / 256.0f;
            }
            for (int i = 0; i < g; i++) x[b * g + i] = fminf(fmaxf(lo + (hi - lo) * urand(), lo), hi);
            for (int s = 0; s < g / 32; s++) {
                x[b * g + 32 * s + (int)(urand() * 16)] = is_int4(t) ? lo : (hi > -lo ? hi : lo);
                x[b * g + 32 * s + 16 + (int)(urand() * 16)] = is_int4(t) ? hi : (hi > -lo ? hi : lo);
            }
        }
        q = quantize(t, x, 1, n, &rb);
        unsigned char *q32 = quantize(t32, x, 1, n, &rb32);
        cs_cpu_dequant_row(t, q, y, n);
        cs_cpu_dequant_row(t32, q32, y32, n);
        TEST_CONDF(!memcmp(y, y32, sizeof(float) * n), "%s and %s quantise the same groups differently",
                   cs_dtype_name(t), cs_dtype_name(t32));
        free(q);
        free(q32);
    }
    free(x);
    free(y);
    free(y32);
}

// out = x W^T + bias against float64 over the dequantised W. Each output is cs_dot_f32's
// arithmetic: 8 lanes of k/8 chained FMAs, 3 pairwise adds, then + bias, so every term
// passes through at most k/8 + 4 fp32 roundings and (Higham) |out - ref| <=
// gamma(k/8 + 4) * (sum |x w| + |bias|), gamma(j) = j u / (1 - j u), u = 2^-24.
// Every m must also give the same bits: m <= 4 decodes in registers (GEMV), m > 4 tiles
// over dequantised rows, and a token's result must not depend on its batch.
static void test_matmul(cs_pool *pool) {
    const int Ms[] = {1, 2, 4, 5, 16, 33, 128}, Ns[] = {192, 320, 67}, max_m = 128;
    for (int ti = 0; ti < N_QTYPES; ti++) {
        cs_dtype t = QTYPES[ti];
        int g = cs_dtype_group(t);
        const int Ks[] = {3 * g, 384, 640}; // multiples of the group, none of 256
        for (int ki = 0; ki < 3; ki++)
            for (int ni = 0; ni < 3; ni++) {
                int k = Ks[ki], n = Ns[ni];
                if (ki > 0 && k == Ks[0]) continue;
                float *wf = malloc(sizeof(float) * n * k), *we = malloc(sizeof(float) * n * k);
                float *x = malloc(sizeof(float) * max_m * k), *bias = malloc(sizeof(float) * n);
                float *ref_out = malloc(sizeof(float) * max_m * n), *out = malloc(sizeof(float) * max_m * n);
                for (int i = 0; i < n * k; i++) wf[i] = frand() * 0.1f;
                for (int i = 0; i < max_m * k; i++) x[i] = frand();
                for (int i = 0; i < n; i++) bias[i] = frand();
                size_t rb;
                void *w = quantize(t, wf, n, k, &rb);
                dequantize(t, w, rb, n, k, we);
                float *scratch = aligned_alloc(64, cs_cpu_matmul_scratch(k, cs_pool_threads(pool)) + 64);
                cs_cpu_matmul(ref_out, x, w, t, bias, max_m, n, k, scratch, pool);
                double gam = (k / 8 + 4) * ldexp(1, -24), worst = 0;
                int over = 0;
                for (int i = 0; i < max_m; i++)
                    for (int j = 0; j < n; j++) {
                        double ref = bias[j], mag = fabs(bias[j]);
                        for (int c = 0; c < k; c++) {
                            double p = (double)x[(size_t)i * k + c] * we[(size_t)j * k + c];
                            ref += p;
                            mag += fabs(p);
                        }
                        double e = fabs(ref_out[(size_t)i * n + j] - ref) / (gam / (1 - gam) * mag);
                        worst = e > worst ? e : worst;
                        over += e > 1;
                    }
                TEST_CONDF(over == 0, "matmul %s n %d k %d: %d outputs over the bound (worst %.3g of it)",
                           cs_dtype_name(t), n, k, over, worst);
                for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                    int m = Ms[mi];
                    const float *xm = x + (size_t)(max_m - m) * k; // the last m rows
                    cs_cpu_matmul(out, xm, w, t, bias, m, n, k, scratch, pool);
                    TEST_CONDF(!memcmp(out, ref_out + (size_t)(max_m - m) * n, sizeof(float) * m * n),
                               "matmul %s m %d n %d k %d: differs from the same rows at m = %d", cs_dtype_name(t),
                               m, n, k, max_m);
                }
                // the GEMV path against the tiled path directly: each of 5 rows alone vs all 5
                cs_cpu_matmul(out, x, w, t, bias, 5, n, k, scratch, pool);
                for (int r = 0; r < 5; r++) {
                    float row[320];
                    cs_cpu_matmul(row, x + (size_t)r * k, w, t, bias, 1, n, k, scratch, pool);
                    TEST_CONDF(!memcmp(row, out + (size_t)r * n, sizeof(float) * n),
                               "matmul %s n %d k %d: row %d differs at m = 1 and m = 5", cs_dtype_name(t), n, k, r);
                }
                free(wf); free(we); free(x); free(bias); free(ref_out); free(out); free(w); free(scratch);
            }
    }
}

int main(void) {
    test_types();
    test_layout();
    test_contract();
    test_roundtrip();
    test_idempotent();
    test_matches_g32();
    cs_pool *pool = cs_pool_init(3);
    test_matmul(NULL);
    test_matmul(pool);
    cs_pool_free(pool);
    return TEST_REPORT();
}
