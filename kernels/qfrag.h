// What one lane of the int4 / int8 matmul (kernels/cuda/qmatmul.cu) makes of the packed codes
// (layout: qpack.h): where its words and scales are, and the mma.sync m16n8k16 A fragments it
// builds from them. Shared by the CUDA kernels (device code, PTX for the packed bf16 FMA) and
// by the CPU test that replays a warp's fragments against the reference (tests/test_qfrag.c),
// so the index and bit arithmetic the GPU runs is the one CI checks.
//
// A fragment of a k16 step (g = lane / 4, t = lane % 4): register 0 = A[g][2t, 2t+1],
// 1 = A[g+8][2t, 2t+1], 2 = A[g][2t+8, 2t+9], 3 = A[g+8][2t+8, 2t+9] (bf16 pairs, the lower
// column in the low half); tile column 2t + i is k = kc + i and 2t + 8 + i is k = kc + 2 + i,
// kc = 64 c + 16 t + 4 j for step j of chunk c (qpack.h). B's registers are the activations
// x[kc], x[kc+1] and x[kc+2], x[kc+3]: words 2j and 2j + 1 of the 16 bf16 at qf_x_col(c, lane).
#ifndef CS_QFRAG_H
#define CS_QFRAG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#include <cuda_bf16.h>
#define QF_FN static __host__ __device__ __forceinline__
#else
#include <math.h>
#include <string.h>
#define QF_FN static inline
#endif
#ifdef __CUDA_ARCH__
#define QF_UNROLL _Pragma("unroll")
#else
#define QF_UNROLL
#endif

// Words of codes per lane and chunk.
QF_FN int qf_words(int bits) { return bits == 4 ? 4 : 8; }

// Index of lane's first code word of chunk c in row tile rt.
QF_FN size_t qf_code_index(int rt, int c, int lane, int n_chunks, int bits) {
    return (((size_t)rt * (size_t)n_chunks + (size_t)c) * 32 + (size_t)lane) * (size_t)qf_words(bits);
}

// Index of the scale word of lane's row g (row g + 8 is 8 further) for chunk c.
QF_FN size_t qf_scale_index(int rt, int c, int lane, int n_groups, int group) {
    return ((size_t)rt * (size_t)n_groups + (size_t)((c * 64 + 16 * (lane % 4)) / group)) * 16 + (size_t)(lane / 4);
}

// Where a lane's element sits: column kc_off (0..15) of its 16 (k = qf_x_col + kc_off), in row
// g (hi 0) or g + 8 (hi 1): its word within the lane's words, and the bit shift in it.
QF_FN int qf_elem_word(int bits, int hi, int kc_off, int *shift) {
    const int j = kc_off / 4, e = kc_off % 4;
    if (bits == 4) {
        *shift = 4 * ((e & 1) * 4 + (e >> 1) * 2 + hi);
        return j;
    }
    *shift = 8 * (hi * 2 + (e & 1));
    return 2 * j + (e >> 1);
}

// The first of the 16 activation columns lane reads for chunk c.
QF_FN int qf_x_col(int c, int lane) { return c * 64 + 16 * (lane % 4); }

QF_FN uint32_t qf_and_or(uint32_t a, uint32_t b, uint32_t c) { // (a & b) | c
#ifdef __CUDA_ARCH__
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#else
    return (a & b) | c;
#endif
}

// __byte_perm: byte i of the result is byte (sel >> 4i) & 7 of the 8 bytes b:a.
QF_FN uint32_t qf_prmt(uint32_t a, uint32_t b, uint32_t sel) {
#ifdef __CUDA_ARCH__
    return __byte_perm(a, b, sel);
#else
    uint64_t v = (uint64_t)b << 32 | a;
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) r |= (uint32_t)(v >> (8 * ((sel >> (4 * i)) & 7)) & 255) << (8 * i);
    return r;
#endif
}

QF_FN float qf_u2f(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

#ifndef __CUDA_ARCH__
// v rounded to bf16, nearest even, once (v exact in double). Host only.
QF_FN uint16_t qf_bf16_rne(double v) {
    float f;
    uint32_t u;
    if (v == 0 || !isfinite(v) || fabs(v) < 0x1p-120) {
        f = (float)v; // zeros keep their sign; the tiny range does not occur in weights
        memcpy(&u, &f, 4);
        return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
    }
    int e;
    double m = frexp(v, &e);                // |m| in [0.5, 1)
    f = (float)ldexp(nearbyint(ldexp(m, 8)), e - 8); // 8 significant bits: exact in float
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}
QF_FN float qf_bf16_f(uint16_t h) { return qf_u2f((uint32_t)h << 16); }
#endif

// Packed bf16 a * b + c, each half rounded once.
QF_FN uint32_t qf_bf16x2_fma(uint32_t a, uint32_t b, uint32_t c) {
#ifdef __CUDA_ARCH__
    uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#else
    uint32_t d = 0;
    for (int h = 0; h < 2; h++) {
        double x = qf_bf16_f((uint16_t)(a >> 16 * h)), y = qf_bf16_f((uint16_t)(b >> 16 * h));
        double z = qf_bf16_f((uint16_t)(c >> 16 * h));
        // exact in double unless z and x y are over 2^40 apart (never so in weights)
        d |= (uint32_t)qf_bf16_rne(x * y + z) << 16 * h;
    }
    return d;
#endif
}

// Two floats as a bf16 pair, nearest even, lo in the low half.
QF_FN uint32_t qf_pack_bf16x2(float lo, float hi) {
#ifdef __CUDA_ARCH__
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
#else
    return (uint32_t)qf_bf16_rne(lo) | (uint32_t)qf_bf16_rne(hi) << 16;
#endif
}

// int4: the fragment of one code word. s_lo, m_lo (row g) and s_hi, m_hi (row g + 8) are
// broadcast bf16 pairs. A shift and a LOP3 give (128 + q, 128 + q') as bf16 (qpack.h); an FMA
// takes 128 off, exactly; a second makes s q + m, rounded once.
QF_FN void qf_frag_i4(uint32_t a[4], uint32_t w, uint32_t s_lo, uint32_t m_lo, uint32_t s_hi, uint32_t m_hi) {
    const uint32_t MAGIC = 0x43004300u, ONE = 0x3F803F80u, NEG128 = 0xC300C300u; // 128, 1, -128
    const uint32_t p0 = qf_and_or(w, 0x000F000Fu, MAGIC), p1 = qf_and_or(w >> 4, 0x000F000Fu, MAGIC);
    const uint32_t p2 = qf_and_or(w >> 8, 0x000F000Fu, MAGIC), p3 = qf_and_or(w >> 12, 0x000F000Fu, MAGIC);
    a[0] = qf_bf16x2_fma(qf_bf16x2_fma(p0, ONE, NEG128), s_lo, m_lo);
    a[1] = qf_bf16x2_fma(qf_bf16x2_fma(p1, ONE, NEG128), s_hi, m_hi);
    a[2] = qf_bf16x2_fma(qf_bf16x2_fma(p2, ONE, NEG128), s_lo, m_lo);
    a[3] = qf_bf16x2_fma(qf_bf16x2_fma(p3, ONE, NEG128), s_hi, m_hi);
}

// int8: bytes sel_lo, sel_hi of v (codes with the sign bit flipped: q + 128) as the bf16 pair
// s q. A byte permute puts q + 128 in the mantissa of 2^23; subtracting 2^23 + 128 leaves q.
QF_FN uint32_t qf_pair_i8(uint32_t v, uint32_t sel_lo, uint32_t sel_hi, uint32_t s2) {
    const float f_lo = qf_u2f(qf_prmt(v, 0x4B000000u, 0x7440u | sel_lo)) - 8388736.0f;
    const float f_hi = qf_u2f(qf_prmt(v, 0x4B000000u, 0x7440u | sel_hi)) - 8388736.0f;
    return qf_bf16x2_fma(qf_pack_bf16x2(f_lo, f_hi), s2, 0x80008000u); // + (-0): s q, rounded once
}

// int8: the fragment of words 2j (kc, kc+1) and 2j+1 (kc+2, kc+3).
QF_FN void qf_frag_i8(uint32_t a[4], uint32_t w0, uint32_t w1, uint32_t s_lo, uint32_t s_hi) {
    const uint32_t v0 = w0 ^ 0x80808080u, v1 = w1 ^ 0x80808080u;
    a[0] = qf_pair_i8(v0, 0, 1, s_lo);
    a[1] = qf_pair_i8(v0, 2, 3, s_hi);
    a[2] = qf_pair_i8(v1, 0, 1, s_lo);
    a[3] = qf_pair_i8(v1, 2, 3, s_hi);
}

// The four k16 steps' fragments of a lane's chunk: its code words w (qf_words(bits)) and the
// scale words (bf16 s low, m high) of its rows g and g + 8.
QF_FN void qf_frags(int bits, uint32_t af[4][4], const uint32_t *w, uint32_t sm_lo, uint32_t sm_hi) {
    const uint32_t s_lo = qf_prmt(sm_lo, 0, 0x1010), m_lo = qf_prmt(sm_lo, 0, 0x3232);
    const uint32_t s_hi = qf_prmt(sm_hi, 0, 0x1010), m_hi = qf_prmt(sm_hi, 0, 0x3232);
    QF_UNROLL
    for (int j = 0; j < 4; j++) {
        if (bits == 4) qf_frag_i4(af[j], w[j], s_lo, m_lo, s_hi, m_hi);
        else qf_frag_i8(af[j], w[2 * j], w[2 * j + 1], s_lo, s_hi);
    }
}

#endif
