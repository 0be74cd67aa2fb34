// CPU dequantisers: the reference for every quantised kernel.
#include "../kernels.h"

#include <string.h>

#include "../../common/assert.h"
#include "quant_simd.h"

// Each block decodes in registers (quant_simd.h), 32 weights at a time, and is stored: the
// same values the scalar formulas in dtype.h give. G weights and BB bytes per block.
#define DEQUANT_BLOCKS(name, G, BB, decode)                                    \
    static void name(const unsigned char *p, float *y, int64_t nb) {           \
        for (int64_t i = 0; i < nb; i++)                                       \
            for (int s = 0; s < (G) / 32; s++) {                               \
                cs_v8 w[4];                                                    \
                decode(p + i * (BB), s, w);                                    \
                memcpy(y + i * (G) + 32 * s, w, sizeof w);                     \
            }                                                                  \
    }
DEQUANT_BLOCKS(dequant_q8_0, 32, CS_I8_BLOCK_BYTES(32), cs_i8_sub_v8)
DEQUANT_BLOCKS(dequant_q4_0, 32, sizeof(cs_block_q4_0), cs_q4_0_sub_v8)
DEQUANT_BLOCKS(dequant_q4_1, 32, CS_I4_BLOCK_BYTES(32), cs_q4_1_sub_v8)
DEQUANT_BLOCKS(dequant_i4_g32, 32, CS_I4F_BLOCK_BYTES(32), cs_i4_sub_v8)
DEQUANT_BLOCKS(dequant_i4_g64, 64, CS_I4_BLOCK_BYTES(64), cs_i4_sub_v8)
DEQUANT_BLOCKS(dequant_i4_g128, 128, CS_I4_BLOCK_BYTES(128), cs_i4_sub_v8)
DEQUANT_BLOCKS(dequant_i8_g64, 64, CS_I8_BLOCK_BYTES(64), cs_i8_sub_v8)
DEQUANT_BLOCKS(dequant_i8_g128, 128, CS_I8_BLOCK_BYTES(128), cs_i8_sub_v8)

// 16-bit floats: runs of 32 through the vector decoder, the rest one by one; both exact.
static void dequant_half(const unsigned char *s, float *dst, int64_t n, void (*decode32)(const unsigned char *, int, cs_v8 *),
                         float (*convert)(uint16_t)) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        cs_v8 w[4];
        decode32(s + 2 * i, 0, w);
        memcpy(dst + i, w, sizeof w);
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = convert(h);
    }
}

void cs_cpu_dequant_row(cs_dtype t, const void *src, float *dst, int64_t n) {
    CS_ASSERT(n >= 0 && n % cs_dtype_block_elems(t) == 0);
    const unsigned char *s = src;
    switch (t) {
    case CS_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case CS_DTYPE_F16: dequant_half(s, dst, n, cs_f16_sub_v8, cs_fp16_to_f32); break;
    case CS_DTYPE_BF16: dequant_half(s, dst, n, cs_bf16_sub_v8, cs_bf16_to_f32); break;
    // Block types are read through byte pointers (quant_simd.h): 2-byte alignment suffices.
    case CS_DTYPE_Q8_0: dequant_q8_0(s, dst, n / 32); break;
    case CS_DTYPE_Q4_0: dequant_q4_0(s, dst, n / 32); break;
    case CS_DTYPE_Q4_1: dequant_q4_1(s, dst, n / 32); break;
    case CS_DTYPE_I4_G32: dequant_i4_g32(s, dst, n / 32); break;
    case CS_DTYPE_I4_G64: dequant_i4_g64(s, dst, n / 64); break;
    case CS_DTYPE_I4_G128: dequant_i4_g128(s, dst, n / 128); break;
    case CS_DTYPE_I8_G64: dequant_i8_g64(s, dst, n / 64); break;
    case CS_DTYPE_I8_G128: dequant_i8_g128(s, dst, n / 128); break;
    case CS_DTYPE_COUNT: CS_ASSERT(0 && "bad dtype");
    }
}
