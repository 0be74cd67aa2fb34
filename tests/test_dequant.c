// CPU dequantisers against blocks whose values are computed by hand, and the fp16/bf16
// conversions against exhaustive and known cases.
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test_util.h"

static void test_q8_0(void) {
    cs_block_q8_0 b[2];
    b[0].d = 0x3800; // fp16 0.5
    b[1].d = 0xc000; // fp16 -2.0
    for (int j = 0; j < 32; j++) {
        b[0].qs[j] = (int8_t)(j - 16);
        b[1].qs[j] = (int8_t)(j % 2 ? 127 : -128);
    }
    float y[64];
    cs_cpu_dequant_row(CS_DTYPE_Q8_0, b, y, 64);
    TEST_COND(y[0] == -8.0f && y[16] == 0.0f && y[31] == 7.5f);
    TEST_COND(y[32] == 256.0f && y[33] == -254.0f);
}

static void test_q4_0(void) {
    cs_block_q4_0 b;
    b.d = 0x3c00; // 1.0
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    cs_cpu_dequant_row(CS_DTYPE_Q4_0, &b, y, 32);
    // low nibbles are weights 0..15, high nibbles weights 16..31, both minus 8
    TEST_COND(y[0] == -8.0f && y[15] == 7.0f);
    TEST_COND(y[16] == 7.0f && y[31] == -8.0f);
}

static void test_q4_1(void) {
    cs_block_q4_1 b;
    b.d = 0x3400; // 0.25
    b.m = 0xbc00; // -1.0
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (3 << 4));
    float y[32];
    cs_cpu_dequant_row(CS_DTYPE_Q4_1, &b, y, 32);
    TEST_COND(y[0] == -1.0f && y[4] == 0.0f && y[15] == 2.75f);
    for (int j = 16; j < 32; j++) TEST_COND(y[j] == -0.25f);
}

static void test_float_types(void) {
    uint16_t h[3] = {0x3c00, 0xc100, 0x0001}; // 1, -2.5, smallest subnormal
    float y[3];
    cs_cpu_dequant_row(CS_DTYPE_F16, h, y, 3);
    TEST_COND(y[0] == 1.0f && y[1] == -2.5f && y[2] == ldexpf(1.0f, -24));
    uint16_t bf[2] = {0x3f80, 0xc0a0}; // 1, -5
    cs_cpu_dequant_row(CS_DTYPE_BF16, bf, y, 2);
    TEST_COND(y[0] == 1.0f && y[1] == -5.0f);
    float f[3] = {1.25f, -0.0f, 3e38f};
    cs_cpu_dequant_row(CS_DTYPE_F32, f, y, 3);
    TEST_COND(!memcmp(f, y, sizeof f));
}

// The row dequantiser (vectorised where the CPU allows) agrees with the scalar conversion on
// every fp16 and every bf16 bit pattern, subnormals, infinities and NaNs included.
static void test_f16_rows_exhaustive(void) {
    static uint16_t h[65536];
    static float y[65536];
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    cs_cpu_dequant_row(CS_DTYPE_F16, h, y, 65536);
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        float want = cs_fp16_to_f32((uint16_t)i);
        if (!(memcmp(&want, &y[i], 4) == 0 || (isnan(want) && isnan(y[i])))) bad++;
    }
    TEST_CONDF(bad == 0, "%d fp16 values dequantise differently", bad);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)(i * 40503u); // bf16: every pattern, shuffled
    cs_cpu_dequant_row(CS_DTYPE_BF16, h, y, 65536);
    bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        float want = cs_bf16_to_f32(h[i]);
        if (memcmp(&want, &y[i], 4) != 0) bad++; // NaN payloads too: the conversion is a shift
    }
    TEST_CONDF(bad == 0, "%d bf16 values dequantise differently", bad);
}

static bool same_value(float want, float got) { return !memcmp(&want, &got, 4) || (isnan(want) && isnan(got)); }

// The block decoders against the formulas of dtype.h, each product and sum rounded on its own,
// on every fp16 scale: the vector decoders fuse multiply and add where the product is exact,
// which this proves leaves every value as it was (subnormals, infinities and NaNs included).
// Q4_1's m walks every fp16 pattern too, paired with the scales by a fixed permutation.
static void test_blocks_every_scale(void) {
    enum { N = 65536 };
    static cs_block_q4_1 b1[N];
    static cs_block_q4_0 b0[N];
    static cs_block_q8_0 b8[N];
    static float y[N * 32];
    for (uint32_t i = 0; i < N; i++) {
        b1[i].d = b0[i].d = b8[i].d = (uint16_t)i;
        b1[i].m = (uint16_t)(i * 40503u + 12345u); // odd multiplier: every pattern once
        for (int j = 0; j < 16; j++) b1[i].qs[j] = b0[i].qs[j] = (uint8_t)((j + i) % 16 | ((15 - j) << 4));
        for (int j = 0; j < 32; j++) b8[i].qs[j] = (int8_t)(j * 8 - 128 + (int)(i % 8));
    }
    int bad = 0;
    cs_cpu_dequant_row(CS_DTYPE_Q4_1, b1, y, (int64_t)N * 32);
    for (uint32_t i = 0; i < N; i++) {
        float d = cs_fp16_to_f32(b1[i].d), m = cs_fp16_to_f32(b1[i].m);
        for (int j = 0; j < 32; j++) {
            int q = j < 16 ? b1[i].qs[j] & 15 : b1[i].qs[j - 16] >> 4;
            float dq = d * (float)q;
            bad += !same_value(dq + m, y[i * 32 + j]);
        }
    }
    TEST_CONDF(bad == 0, "Q4_1: %d weights differ from d * q + m", bad);
    bad = 0;
    cs_cpu_dequant_row(CS_DTYPE_Q4_0, b0, y, (int64_t)N * 32);
    for (uint32_t i = 0; i < N; i++) {
        float d = cs_fp16_to_f32(b0[i].d);
        for (int j = 0; j < 32; j++) {
            int q = j < 16 ? b0[i].qs[j] & 15 : b0[i].qs[j - 16] >> 4;
            bad += !same_value(d * (float)(q - 8), y[i * 32 + j]);
        }
    }
    TEST_CONDF(bad == 0, "Q4_0: %d weights differ from d * (q - 8)", bad);
    bad = 0;
    cs_cpu_dequant_row(CS_DTYPE_Q8_0, b8, y, (int64_t)N * 32);
    for (uint32_t i = 0; i < N; i++) {
        float d = cs_fp16_to_f32(b8[i].d);
        for (int j = 0; j < 32; j++) bad += !same_value(d * (float)b8[i].qs[j], y[i * 32 + j]);
    }
    TEST_CONDF(bad == 0, "Q8_0: %d weights differ from d * q", bad);
}

static void test_conversions(void) {
    // every finite fp16 value survives fp16 -> f32 -> fp16
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (cs_f32_to_fp16(cs_fp16_to_f32((uint16_t)h)) != h) bad++;
    }
    TEST_CONDF(bad == 0, "%d fp16 values do not round-trip", bad);
    TEST_COND(cs_f32_to_fp16(65520.0f) == 0x7c00);       // rounds to inf
    TEST_COND(cs_f32_to_fp16(1.0f + ldexpf(1, -11)) == 0x3c00); // tie to even
    TEST_COND(cs_f32_to_fp16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02);
    TEST_COND(cs_f32_to_fp16(ldexpf(1, -25)) == 0);      // tie below smallest subnormal -> 0
    TEST_COND(cs_f32_to_fp16(ldexpf(3, -26)) == 1);
    TEST_COND(isnan(cs_fp16_to_f32(cs_f32_to_fp16(NAN))));
    TEST_COND(cs_f32_to_bf16(1.0f) == 0x3f80);
    TEST_COND(cs_f32_to_bf16(1.0f + ldexpf(1, -8)) == 0x3f80); // tie to even
    TEST_COND(cs_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)) == 0x3f82);
    TEST_COND(isnan(cs_bf16_to_f32(cs_f32_to_bf16(NAN))));
}

static void test_sizes(void) {
    size_t n;
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_Q4_1, 576, &n) && n == 18 * 20);
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_Q8_0, 64, &n) && n == 68);
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_Q4_0, 32, &n) && n == 18);
    TEST_COND(cs_dtype_row_bytes(CS_DTYPE_BF16, 3, &n) && n == 6);
    TEST_COND(!cs_dtype_row_bytes(CS_DTYPE_Q4_0, 33, &n));
    TEST_COND(!cs_dtype_row_bytes(CS_DTYPE_F32, INT64_MAX, &n));
}

int main(void) {
    test_q8_0();
    test_q4_0();
    test_q4_1();
    test_float_types();
    test_conversions();
    test_f16_rows_exhaustive();
    test_blocks_every_scale();
    test_sizes();
    return TEST_REPORT();
}
