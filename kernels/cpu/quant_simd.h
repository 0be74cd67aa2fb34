// Quantised weights decoded 32 at a time into four 8-wide vectors (weights 0-7, 8-15, 16-23,
// 24-31), computing exactly what the scalar formulas in dtype.h give (d * q, then + m, each
// rounded to fp32), so that dequantising to memory and decoding in registers give
// bit-identical weights. A fused multiply-add appears only where the product is exact, so
// that its one rounding is the sum's (Q4_1), and tests/test_dequant.c checks it on every
// fp16 scale.
//
// Every block type is read as "sub-block s of the block at p" (32 weights each), so one loop
// shape serves all group sizes: Q4_1 is I4 with one sub-block (but fp16 d, m), Q8_0 is I8
// with one. Blocks are read through byte pointers and memcpy: only 2-byte alignment is
// promised (block sizes are even), and the I4_Gg headers' fp32 d and m are read the same way.
#ifndef CS_QUANT_SIMD_H
#define CS_QUANT_SIMD_H

#include <string.h>

#include "../dtype.h"
#include "cpu_simd.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
static inline float cs_half(uint16_t h) { return _cvtsh_ss(h); } // exact, like cs_fp16_to_f32
#else
static inline float cs_half(uint16_t h) { return cs_fp16_to_f32(h); }
#endif

static inline float cs_half_at(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return cs_half(h);
}

#if defined(__AVX2__) && defined(__FMA__)
// 32 nibbles from 16 bytes in Q4_1 order, minus `off`, as floats: the low nibbles of bytes
// 0-7 and 8-15 are weights 0-7 and 8-15, the high ones 16-23 and 24-31. Each 8 bytes widen
// straight from memory to 32-bit lanes, where the high nibble is a shift with nothing to mask.
static inline void cs_q4_nibbles(const uint8_t *qs, int off, __m256 out[4]) {
    __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)qs));
    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8)));
    __m256i mask = _mm256_set1_epi32(0x0f), o = _mm256_set1_epi32(off);
    out[0] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(a, mask), o));
    out[1] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(b, mask), o));
    out[2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(a, 4), o));
    out[3] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 4), o));
}

// w = d * nibble + m for 16 bytes of Q4_1-ordered nibbles, any fp32 d and m.
static inline void cs_q4_1_v8(float d, float m, const uint8_t *qs, cs_v8 w[4]) {
    __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
    cs_q4_nibbles(qs, 0, w);
    for (int i = 0; i < 4; i++) w[i] = _mm256_add_ps(_mm256_mul_ps(dv, w[i]), mv);
}

// The same when d came from fp16: its 11 significant bits times a 4-bit code need at most 15,
// so d * nibble is exact in fp32 and one fused multiply-add rounds exactly where the product
// and the sum did. fp16 d and m are at p, the codes at qs.
static inline void cs_q4_1_h_v8(const unsigned char *p, const uint8_t *qs, cs_v8 w[4]) {
#if defined(__F16C__)
    int32_t dm;
    memcpy(&dm, p, 4);
    __m128 h = _mm_cvtph_ps(_mm_cvtsi32_si128(dm)); // both at once, exact like cs_fp16_to_f32
    __m256 dv = _mm256_broadcastss_ps(h), mv = _mm256_broadcastss_ps(_mm_movehdup_ps(h));
#else
    __m256 dv = _mm256_set1_ps(cs_half_at(p)), mv = _mm256_set1_ps(cs_half_at(p + 2));
#endif
    cs_q4_nibbles(qs, 0, w);
    for (int i = 0; i < 4; i++) w[i] = _mm256_fmadd_ps(dv, w[i], mv);
}

// w = d * (nibble - 8).
static inline void cs_q4_0_v8(float d, const uint8_t *qs, cs_v8 w[4]) {
    __m256 dv = _mm256_set1_ps(d);
    cs_q4_nibbles(qs, 8, w);
    for (int i = 0; i < 4; i++) w[i] = _mm256_mul_ps(dv, w[i]);
}

// w = d * q for 32 int8 codes.
static inline void cs_q8_v8(float d, const int8_t *qs, cs_v8 w[4]) {
    __m256 dv = _mm256_set1_ps(d);
    for (int i = 0; i < 4; i++) {
        __m128i q = _mm_loadl_epi64((const __m128i *)(qs + 8 * i));
        w[i] = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    }
}
#else
static inline void cs_q4_1_v8(float d, float m, const uint8_t *qs, cs_v8 w[4]) {
    for (int j = 0; j < 16; j++) {
        w[j / 8][j % 8] = d * (float)(qs[j] & 0x0f) + m;
        w[2 + j / 8][j % 8] = d * (float)(qs[j] >> 4) + m;
    }
}

static inline void cs_q4_1_h_v8(const unsigned char *p, const uint8_t *qs, cs_v8 w[4]) {
    cs_q4_1_v8(cs_half_at(p), cs_half_at(p + 2), qs, w);
}

static inline void cs_q4_0_v8(float d, const uint8_t *qs, cs_v8 w[4]) {
    for (int j = 0; j < 16; j++) {
        w[j / 8][j % 8] = d * (float)((qs[j] & 0x0f) - 8);
        w[2 + j / 8][j % 8] = d * (float)((qs[j] >> 4) - 8);
    }
}

static inline void cs_q8_v8(float d, const int8_t *qs, cs_v8 w[4]) {
    for (int j = 0; j < 32; j++) w[j / 8][j % 8] = d * (float)qs[j];
}
#endif

// 16-bit floats, 32 at a time (64 bytes; "sub-block" s of 32 weights at p): exact conversions.
// The portable form of both: each element through the scalar conversion.
static inline void cs_half32_scalar(const unsigned char *p, float (*convert)(uint16_t), cs_v8 w[4]) {
    for (int j = 0; j < 32; j++) {
        uint16_t h;
        memcpy(&h, p + 2 * j, 2);
        w[j / 8][j % 8] = convert(h);
    }
}

static inline void cs_f16_sub_v8(const unsigned char *p, int s, cs_v8 w[4]) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    for (int i = 0; i < 4; i++) w[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 64 * s + 16 * i)));
#else
    cs_half32_scalar(p + 64 * s, cs_fp16_to_f32, w);
#endif
}

static inline void cs_bf16_sub_v8(const unsigned char *p, int s, cs_v8 w[4]) {
#if defined(__AVX2__) && defined(__FMA__)
    for (int i = 0; i < 4; i++) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 64 * s + 16 * i)));
        w[i] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); // bf16 is fp32's top half
    }
#else
    cs_half32_scalar(p + 64 * s, cs_bf16_to_f32, w);
#endif
}

static inline float cs_f32_at(const unsigned char *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

// Q4_1 (one sub-block: s is always 0): fp16 d, fp16 m, then 16 bytes.
static inline void cs_q4_1_sub_v8(const unsigned char *p, int s, cs_v8 w[4]) {
    cs_q4_1_h_v8(p, p + 4 + 16 * s, w);
}

// Sub-block s of one I4_Gg block at p: fp32 d, fp32 m, then 16 bytes per sub-block.
static inline void cs_i4_sub_v8(const unsigned char *p, int s, cs_v8 w[4]) {
    cs_q4_1_v8(cs_f32_at(p), cs_f32_at(p + 4), p + 8 + 16 * s, w);
}

// Q8_0 and I8_Gg: fp16 d, then 32 int8 codes per sub-block.
static inline void cs_i8_sub_v8(const unsigned char *p, int s, cs_v8 w[4]) {
    cs_q8_v8(cs_half_at(p), (const int8_t *)(p + 2 + 32 * s), w);
}

// Q4_0 (one sub-block: s is always 0).
static inline void cs_q4_0_sub_v8(const unsigned char *p, int s, cs_v8 w[4]) {
    cs_q4_0_v8(cs_half_at(p), p + 2 + 16 * s, w);
}

#endif
