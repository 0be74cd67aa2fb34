// One 32-weight block of Q8_0 / Q4_0 / Q4_1 decoded into four 8-wide vectors (weights 0-7,
// 8-15, 16-23, 24-31), computing exactly what the scalar reference computes (d * q, then
// + m, each rounded to fp32: no fused multiply-add), so that dequantising to memory and
// decoding in registers give bit-identical weights.
#ifndef CS_QUANT_SIMD_H
#define CS_QUANT_SIMD_H

#include "../dtype.h"
#include "cpu_simd.h"

#if defined(__AVX2__) && defined(__FMA__)
#ifdef __F16C__
#define CS_HALF(h) _cvtsh_ss(h) // exact, like cs_fp16_to_f32
#else
#define CS_HALF(h) cs_fp16_to_f32(h)
#endif
static inline __m256 cs_u8x8_to_f32(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }

static inline void cs_q4_nibbles(const uint8_t *qs, __m256 out[4]) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs), mask = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    out[0] = cs_u8x8_to_f32(lo);
    out[1] = cs_u8x8_to_f32(_mm_srli_si128(lo, 8));
    out[2] = cs_u8x8_to_f32(hi);
    out[3] = cs_u8x8_to_f32(_mm_srli_si128(hi, 8));
}

static inline void cs_block_q4_1_v8(const cs_block_q4_1 *b, cs_v8 w[4]) {
    __m256 d = _mm256_set1_ps(CS_HALF(b->d)), m = _mm256_set1_ps(CS_HALF(b->m));
    cs_q4_nibbles(b->qs, w);
    for (int i = 0; i < 4; i++) w[i] = _mm256_add_ps(_mm256_mul_ps(d, w[i]), m);
}

static inline void cs_block_q4_0_v8(const cs_block_q4_0 *b, cs_v8 w[4]) {
    __m256 d = _mm256_set1_ps(CS_HALF(b->d)), eight = _mm256_set1_ps(8.0f);
    cs_q4_nibbles(b->qs, w);
    for (int i = 0; i < 4; i++) w[i] = _mm256_mul_ps(d, _mm256_sub_ps(w[i], eight)); // exact: small ints
}

static inline void cs_block_q8_0_v8(const cs_block_q8_0 *b, cs_v8 w[4]) {
    __m256 d = _mm256_set1_ps(CS_HALF(b->d));
    for (int i = 0; i < 4; i++) {
        __m128i q = _mm_loadl_epi64((const __m128i *)(b->qs + 8 * i));
        w[i] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    }
}
#else
static inline void cs_block_q4_1_v8(const cs_block_q4_1 *b, cs_v8 w[4]) {
    float d = cs_fp16_to_f32(b->d), m = cs_fp16_to_f32(b->m);
    for (int j = 0; j < 16; j++) {
        w[j / 8][j % 8] = d * (float)(b->qs[j] & 0x0f) + m;
        w[2 + j / 8][j % 8] = d * (float)(b->qs[j] >> 4) + m;
    }
}

static inline void cs_block_q4_0_v8(const cs_block_q4_0 *b, cs_v8 w[4]) {
    float d = cs_fp16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        w[j / 8][j % 8] = d * (float)((b->qs[j] & 0x0f) - 8);
        w[2 + j / 8][j % 8] = d * (float)((b->qs[j] >> 4) - 8);
    }
}

static inline void cs_block_q8_0_v8(const cs_block_q8_0 *b, cs_v8 w[4]) {
    float d = cs_fp16_to_f32(b->d);
    for (int j = 0; j < 32; j++) w[j / 8][j % 8] = d * (float)b->qs[j];
}
#endif

#endif
