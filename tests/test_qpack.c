// The GPU layout of int4 / int8 matrices (kernels/qpack.h), on the CPU:
//   - unpack(pack(x)) == x, bit for bit, for random codes and bf16-exact scales, on shapes
//     whose n is not a multiple of 16 and whose k is not a multiple of 64 (padding), every
//     group, both widths; the padding unpacks as zero codes and zero scales;
//   - a word holds the eight fragment elements qpack.h names, at the nibbles it names;
//   - from every int4 / int8 source type (Q4_0, Q4_1, I4_G64, I4_G128, Q8_0, I8_G64,
//     I8_G128), the packed weight bf16(s q + m) is within the bf16 rounding of s and m of the
//     CPU dequantiser's value.
#include <math.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/kernels.h"
#include "kernels/qpack.h"
#include "test_util.h"

static uint64_t rng = 0x1234567887654321ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static float rand_bf16(void) { // finite, bf16-exact, in [-2, 2]
    return cs_bf16_to_f32(cs_f32_to_bf16((float)((int)(next_u32() % 4001) - 2000) / 1000.0f));
}

static void roundtrip(int bits, int group, int64_t n, int64_t k) {
    cs_qpack_dims d, dp;
    TEST_COND(cs_qpack_dims_of(bits, group, n, k, &d));
    int64_t ng = k / group;
    uint8_t *codes = malloc((size_t)(n * k)), *back = malloc((size_t)(n * k));
    float *s = malloc(sizeof(float) * (size_t)(n * ng)), *m = malloc(sizeof(float) * (size_t)(n * ng));
    float *s2 = malloc(sizeof(float) * (size_t)(n * ng)), *m2 = malloc(sizeof(float) * (size_t)(n * ng));
    uint32_t *pc = malloc(d.code_words * 4), *ps = malloc(d.scale_words * 4);
    for (int64_t i = 0; i < n * k; i++) codes[i] = (uint8_t)(bits == 4 ? next_u32() % 16 : next_u32() % 256);
    for (int64_t i = 0; i < n * ng; i++) {
        s[i] = rand_bf16();
        m[i] = bits == 4 ? rand_bf16() : 0.0f;
    }
    cs_qpack(&d, codes, s, m, pc, ps);
    cs_qunpack(&d, pc, ps, back, s2, m2);
    TEST_CONDF(memcmp(codes, back, (size_t)(n * k)) == 0, "int%d g%d %lldx%lld: codes differ", bits, group,
               (long long)n, (long long)k);
    TEST_CONDF(memcmp(s, s2, sizeof(float) * (size_t)(n * ng)) == 0 && memcmp(m, m2, sizeof(float) * (size_t)(n * ng)) == 0,
               "int%d g%d %lldx%lld: scales differ", bits, group, (long long)n, (long long)k);
    // the padded matrix seen whole: beyond row n or column k, every code and scale is 0
    TEST_COND(cs_qpack_dims_of(bits, group, d.n_pad, d.k_pad, &dp));
    TEST_COND(dp.code_words == d.code_words && dp.scale_words == d.scale_words && dp.n_groups == d.n_groups);
    int64_t ngp = d.k_pad / group;
    uint8_t *pcodes = malloc((size_t)(d.n_pad * d.k_pad));
    float *ps2 = malloc(sizeof(float) * (size_t)(d.n_pad * ngp)), *pm2 = malloc(sizeof(float) * (size_t)(d.n_pad * ngp));
    cs_qunpack(&dp, pc, ps, pcodes, ps2, pm2);
    long bad = 0;
    for (int64_t r = 0; r < d.n_pad; r++)
        for (int64_t c = 0; c < d.k_pad; c++) {
            bool pad = r >= n || c >= k;
            uint8_t want = pad ? 0 : codes[r * k + c];
            if (pcodes[r * d.k_pad + c] != want) bad++;
            if (pad && c % group == 0 && (ps2[r * ngp + c / group] != 0.0f || pm2[r * ngp + c / group] != 0.0f)) bad++;
        }
    TEST_CONDF(bad == 0, "int%d g%d %lldx%lld: %ld padded codes or scales wrong", bits, group, (long long)n,
               (long long)k, bad);
    free(pcodes), free(ps2), free(pm2);
    free(codes), free(back), free(s), free(m), free(s2), free(m2), free(pc), free(ps);
}

// Word j of lane L: nibble i is the fragment element qpack.h lists (int4).
static void word_layout(void) {
    cs_qpack_dims d;
    TEST_COND(cs_qpack_dims_of(4, 32, 32, 128, &d));
    uint8_t *codes = calloc(32 * 128, 1);
    float s[32 * 4], m[32 * 4];
    for (int i = 0; i < 32 * 4; i++) s[i] = 1.0f, m[i] = 0.0f;
    uint32_t *pc = malloc(d.code_words * 4), *ps = malloc(d.scale_words * 4);
    // row tile 1, chunk 1, lane G=5 T=2, word j=3: r0 = 21, kc = 64 + 32 + 12 = 108
    const int r0 = 21, kc = 108;
    const int el[8][2] = {{r0, kc}, {r0 + 8, kc}, {r0, kc + 2}, {r0 + 8, kc + 2},
                          {r0, kc + 1}, {r0 + 8, kc + 1}, {r0, kc + 3}, {r0 + 8, kc + 3}};
    for (int i = 0; i < 8; i++) codes[el[i][0] * 128 + el[i][1]] = (uint8_t)(i + 1);
    cs_qpack(&d, codes, s, m, pc, ps);
    uint32_t want = 0;
    for (int i = 0; i < 8; i++) want |= (uint32_t)(i + 1) << (4 * i);
    size_t idx = (size_t)((1 * d.n_chunks + 1) * 32 + (5 * 4 + 2)) * 4 + 3;
    TEST_CONDF(pc[idx] == want, "word %zu = %08x, want %08x", idx, pc[idx], want);
    uint32_t others = 0;
    for (size_t w = 0; w < d.code_words; w++)
        if (w != idx) others |= pc[w];
    TEST_COND(others == 0);
    free(codes), free(pc), free(ps);
}

// Random blocks of type t (codes random; scales finite), n x k.
static void fill_blocks(cs_dtype t, unsigned char *p, size_t nbytes) {
    for (size_t i = 0; i < nbytes; i++) p[i] = (unsigned char)next_u32();
    int bb = cs_dtype_block_bytes(t);
    bool i4g = t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128;
    int nscales = t == CS_DTYPE_Q4_1 || i4g ? 2 : 1;
    for (size_t b = 0; b < nbytes / (size_t)bb; b++)
        for (int sc = 0; sc < nscales; sc++) {
            float v = (float)((int)(next_u32() % 4001) - 2000) / 1000.0f;
            if (i4g) {
                v *= 1.0f + (float)(next_u32() % 1024) * 0x1p-20f;
                memcpy(p + b * (size_t)bb + 4 * sc, &v, 4);
            } else {
                uint16_t h = cs_f32_to_fp16(v);
                memcpy(p + b * (size_t)bb + 2 * sc, &h, 2);
            }
        }
}

static void from_type(cs_dtype t, int64_t n, int64_t k) {
    size_t row_bytes;
    TEST_COND(cs_dtype_row_bytes(t, k, &row_bytes));
    unsigned char *src = malloc(row_bytes * (size_t)n);
    fill_blocks(t, src, row_bytes * (size_t)n);
    int g = cs_dtype_group(t), bits = cs_qpack_bits(t);
    cs_qpack_dims d;
    TEST_COND(cs_qpack_dims_of(bits, g, n, k, &d));
    int64_t ng = k / g;
    uint8_t *codes = malloc((size_t)(n * k));
    float *s = malloc(sizeof(float) * (size_t)(n * ng)), *m = malloc(sizeof(float) * (size_t)(n * ng));
    // two halves, as the fused q/k/v matrices are assembled
    int64_t half = n / 2;
    cs_qplain_from(t, src, half, k, 0, codes, s, m);
    cs_qplain_from(t, src + row_bytes * (size_t)half, n - half, k, half, codes, s, m);
    uint32_t *pc = malloc(d.code_words * 4), *ps = malloc(d.scale_words * 4);
    cs_qpack(&d, codes, s, m, pc, ps);
    float *ref = malloc(sizeof(float) * (size_t)k);
    long bad = 0;
    double worst = 0;
    for (int64_t r = 0; r < n; r++) {
        cs_cpu_dequant_row(t, src + row_bytes * (size_t)r, ref, k);
        for (int64_t c = 0; c < k; c++) {
            float w = cs_qpack_weight(&d, pc, ps, r, c);
            int code = bits == 4 ? codes[r * k + c] : (int8_t)codes[r * k + c];
            double sq = fabs((double)s[r * ng + c / g] * code), mm = fabs((double)m[r * ng + c / g]);
            // s and m rounded to bf16 (2^-8 relative each), then the weight (2^-8 of its value)
            double tol = 0x1p-8 * (sq + mm) * 1.01 + 0x1p-8 * fabs((double)ref[c]) * 1.01 + 1e-30;
            double err = fabs((double)w - ref[c]);
            if (!(err <= tol)) bad++;
            if (err / (sq + mm + 1e-30) > worst) worst = err / (sq + mm + 1e-30);
        }
    }
    TEST_CONDF(bad == 0, "%s %lldx%lld: %ld weights off (worst %.3g of |s q| + |m|)", cs_dtype_name(t), (long long)n,
               (long long)k, bad, worst);
    free(src), free(codes), free(s), free(m), free(pc), free(ps), free(ref);
}

int main(void) {
    word_layout();
    const int64_t shapes[][2] = {{16, 64}, {1, 32}, {17, 96}, {33, 160}, {48, 448}, {5, 384}, {130, 1216}};
    for (int bits = 4; bits <= 8; bits += 4)
        for (int g = 32; g <= 128; g *= 2)
            for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
                int64_t k = shapes[i][1] / g * g;
                if (k == 0) k = g;
                roundtrip(bits, g, shapes[i][0], k);
            }
    const cs_dtype types[] = {CS_DTYPE_Q4_0, CS_DTYPE_Q4_1, CS_DTYPE_I4_G32, CS_DTYPE_I4_G64, CS_DTYPE_I4_G128,
                              CS_DTYPE_Q8_0, CS_DTYPE_I8_G64, CS_DTYPE_I8_G128};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        from_type(types[i], 37, 384);
        from_type(types[i], 16, 128);
    }
    cs_qpack_dims d;
    TEST_COND(!cs_qpack_dims_of(4, 48, 16, 96, &d));  // no such group
    TEST_COND(!cs_qpack_dims_of(4, 64, 16, 96, &d));  // k not whole groups
    TEST_COND(!cs_qpack_dims_of(2, 32, 16, 64, &d));  // no such width
    TEST_COND(!cs_qpack_dims_of(4, 32, 0, 64, &d));
    TEST_COND(cs_qpack_bits(CS_DTYPE_BF16) == 0 && cs_qpack_bits(CS_DTYPE_Q4_0) == 4 && cs_qpack_bits(CS_DTYPE_I8_G128) == 8);
    return TEST_REPORT();
}
