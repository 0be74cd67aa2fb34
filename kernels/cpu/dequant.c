// CPU dequantisers: the reference for every quantised kernel.
#include "../kernels.h"

#include <string.h>

#include "../../common/assert.h"

static void dequant_q8_0(const cs_block_q8_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = cs_fp16_to_f32(b[i].d);
        for (int j = 0; j < CS_QK; j++) y[i * CS_QK + j] = d * (float)b[i].qs[j];
    }
}

static void dequant_q4_0(const cs_block_q4_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = cs_fp16_to_f32(b[i].d);
        for (int j = 0; j < CS_QK / 2; j++) {
            y[i * CS_QK + j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
            y[i * CS_QK + j + CS_QK / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const cs_block_q4_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = cs_fp16_to_f32(b[i].d), m = cs_fp16_to_f32(b[i].m);
        for (int j = 0; j < CS_QK / 2; j++) {
            y[i * CS_QK + j] = d * (float)(b[i].qs[j] & 0x0f) + m;
            y[i * CS_QK + j + CS_QK / 2] = d * (float)(b[i].qs[j] >> 4) + m;
        }
    }
}

void cs_cpu_dequant_row(cs_dtype t, const void *src, float *dst, int64_t n) {
    CS_ASSERT(n >= 0 && n % cs_dtype_block_elems(t) == 0);
    const unsigned char *s = src;
    switch (t) {
    case CS_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case CS_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = cs_fp16_to_f32(h);
        }
        break;
    case CS_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = cs_bf16_to_f32(h);
        }
        break;
    // Block types: GGUF aligns tensor data (32 bytes by default) and block sizes are even,
    // so the block structs are read in place.
    case CS_DTYPE_Q8_0: dequant_q8_0(src, dst, n / CS_QK); break;
    case CS_DTYPE_Q4_0: dequant_q4_0(src, dst, n / CS_QK); break;
    case CS_DTYPE_Q4_1: dequant_q4_1(src, dst, n / CS_QK); break;
    case CS_DTYPE_COUNT: CS_ASSERT(0 && "bad dtype");
    }
}
