// Float rows to int4 / int8 blocks, round to nearest per group: how --quant makes its weights
// at load time (engine/model.c), and how the tests and benchmarks make quantised rows.
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "../../common/assert.h"
#include "../kernels.h"

static bool all_finite(const float *x, int g) {
    bool ok = true;
    for (int i = 0; i < g; i++) ok &= isfinite(x[i]);
    return ok;
}

static bool half_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

static void put_half(unsigned char *p, uint16_t h) { memcpy(p, &h, 2); }

// The nearest of the codes 0..15 for w on the grid m + d * q (d, m as stored).
static unsigned code4(float w, float d, float m) {
    if (d == 0) return 0;
    float q = roundf((w - m) / d);
    return q < 0 ? 0 : q > 15 ? 15 : (unsigned)q;
}

// The nearest of the codes -127..127 for w on the grid d * q (d as stored). -128 is never
// used, so the grid is symmetric.
static int8_t code8(float w, float d) {
    if (d == 0) return 0;
    float q = roundf(w / d);
    return (int8_t)(q < -127 ? -127 : q > 127 ? 127 : q);
}

// One group of g weights: d = (max - min) / 15, m = min, then g/32 sub-blocks of 16 bytes in
// Q4_1's nibble order. Q4_1 (g = 32, fp16_header) stores d and m as fp16 at bytes 0 and 2;
// I4_G32 / I4_G64 / I4_G128 store them as fp32 at bytes 0 and 4 (dtype.h), so they are not
// rounded. Codes use d and m as stored, so each is the nearest grid point the block can
// actually represent.
static void quantize_i4_group(const float *x, int g, bool fp16_header, unsigned char *p) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < g; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    float d = (mx - mn) / 15.0f, m = mn;
    int head = 8;
    if (fp16_header) {
        uint16_t dh = cs_f32_to_fp16(d), mh = cs_f32_to_fp16(m);
        CS_ASSERT(all_finite(x, g) && half_finite(dh) && half_finite(mh) && "cs_cpu_quantize_row: int4 group out of range");
        put_half(p, dh);
        put_half(p + 2, mh);
        d = cs_fp16_to_f32(dh);
        m = cs_fp16_to_f32(mh);
        head = 4;
    } else {
        CS_ASSERT(all_finite(x, g) && isfinite(d) && "cs_cpu_quantize_row: int4 group out of range");
        memcpy(p, &d, 4);
        memcpy(p + 4, &m, 4);
    }
    for (int s = 0; s < g / 32; s++) {
        const float *xs = x + 32 * s;
        unsigned char *qs = p + head + 16 * s;
        for (int j = 0; j < 16; j++) qs[j] = (unsigned char)(code4(xs[j], d, m) | code4(xs[j + 16], d, m) << 4);
    }
}

// One group of g weights: fp16 d = absmax / 127, then int8 q[g].
static void quantize_i8_group(const float *x, int g, unsigned char *p) {
    float amax = 0;
    for (int i = 0; i < g; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    uint16_t dh = cs_f32_to_fp16(amax / 127.0f);
    CS_ASSERT(all_finite(x, g) && half_finite(dh) && "cs_cpu_quantize_row: int8 group out of range");
    put_half(p, dh);
    float d = cs_fp16_to_f32(dh);
    for (int i = 0; i < g; i++) p[2 + i] = (unsigned char)code8(x[i], d);
}

void cs_cpu_quantize_row(cs_dtype t, const float *src, void *dst, int64_t n) {
    bool int4 = t == CS_DTYPE_Q4_1 || t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128;
    bool int8 = t == CS_DTYPE_Q8_0 || t == CS_DTYPE_I8_G64 || t == CS_DTYPE_I8_G128;
    int g = cs_dtype_group(t), bb = cs_dtype_block_bytes(t);
    CS_ASSERT((int4 || int8) && n >= 0 && n % g == 0);
    unsigned char *p = dst;
    for (int64_t b = 0; b < n / g; b++) {
        if (int4) quantize_i4_group(src + b * g, g, t == CS_DTYPE_Q4_1, p + b * bb);
        else quantize_i8_group(src + b * g, g, p + b * bb);
    }
}
