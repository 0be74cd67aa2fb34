// CPU dequantisers: the reference for every quantised kernel.
#include "../kernels.h"

#include <string.h>

#include "../../common/assert.h"
#include "quant_simd.h"

// Each block decodes in registers (quant_simd.h) and is stored: the same values the scalar
// formulas in dtype.h give, 8 at a time.
#define DEQUANT_BLOCKS(name, block_t, decode)                                  \
    static void name(const block_t *b, float *y, int64_t nb) {                 \
        for (int64_t i = 0; i < nb; i++) {                                     \
            cs_v8 w[4];                                                        \
            decode(&b[i], w);                                                  \
            memcpy(y + i * CS_QK, w, sizeof w);                                \
        }                                                                      \
    }
DEQUANT_BLOCKS(dequant_q8_0, cs_block_q8_0, cs_block_q8_0_v8)
DEQUANT_BLOCKS(dequant_q4_0, cs_block_q4_0, cs_block_q4_0_v8)
DEQUANT_BLOCKS(dequant_q4_1, cs_block_q4_1, cs_block_q4_1_v8)

void cs_cpu_dequant_row(cs_dtype t, const void *src, float *dst, int64_t n) {
    CS_ASSERT(n >= 0 && n % cs_dtype_block_elems(t) == 0);
    const unsigned char *s = src;
    switch (t) {
    case CS_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case CS_DTYPE_F16: {
        int64_t i = 0;
#if defined(__F16C__)
        for (; i + 8 <= n; i += 8) // exact, like cs_fp16_to_f32
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i))));
#endif
        for (; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = cs_fp16_to_f32(h);
        }
        break;
    }
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
