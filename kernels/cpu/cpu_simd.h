// 8-wide float vectors for the CPU kernels: AVX2+FMA when the compiler targets them
// (CSERVE_NATIVE builds), otherwise portable GCC vector code. FMAs are explicit so that the
// arithmetic, and so every result, is the same wherever a kernel is inlined (the build
// uses -ffp-contract=off).
#ifndef CS_CPU_SIMD_H
#define CS_CPU_SIMD_H

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 cs_v8;
static inline cs_v8 cs_v8_zero(void) { return _mm256_setzero_ps(); }
static inline cs_v8 cs_v8_load(const float *p) { return _mm256_loadu_ps(p); }
static inline cs_v8 cs_v8_fma(cs_v8 a, cs_v8 b, cs_v8 c) { return _mm256_fmadd_ps(a, b, c); }
static inline cs_v8 cs_v8_set1(float x) { return _mm256_set1_ps(x); }
static inline void cs_v8_store(float *p, cs_v8 v) { _mm256_storeu_ps(p, v); }
// Lane j = the sum of a[j]'s lanes, ((0+1) + (2+3)) + ((4+5) + (6+7)): eight sums in one
// transpose.
static inline cs_v8 cs_v8_sum8(const cs_v8 a[8]) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    // u0: lane j < 4 sums the low half of a[j], lane 4 + j its high half; u1 the same for a[4 + j]
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
static inline float cs_v8_sum(cs_v8 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else
#include <math.h>
typedef float cs_v8 __attribute__((vector_size(32)));
static inline cs_v8 cs_v8_zero(void) { return (cs_v8){0}; }
static inline cs_v8 cs_v8_load(const float *p) {
    cs_v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline cs_v8 cs_v8_fma(cs_v8 a, cs_v8 b, cs_v8 c) {
    cs_v8 r;
    for (int i = 0; i < 8; i++) r[i] = fmaf(a[i], b[i], c[i]);
    return r;
}
static inline float cs_v8_sum(cs_v8 v) {
    float a = (v[0] + v[4]) + (v[2] + v[6]), b = (v[1] + v[5]) + (v[3] + v[7]);
    return a + b;
}
static inline cs_v8 cs_v8_set1(float x) { return (cs_v8){x, x, x, x, x, x, x, x}; }
static inline void cs_v8_store(float *p, cs_v8 v) { memcpy(p, &v, sizeof v); }
static inline cs_v8 cs_v8_sum8(const cs_v8 a[8]) {
    cs_v8 r;
    for (int j = 0; j < 8; j++) r[j] = ((a[j][0] + a[j][1]) + (a[j][2] + a[j][3])) + ((a[j][4] + a[j][5]) + (a[j][6] + a[j][7]));
    return r;
}
#endif

// Dot product in the canonical order every CPU kernel shares: one 8-wide accumulator over k
// in steps of 8, its horizontal sum, then the tail with scalar FMAs. Kernels that tile or
// fuse differently keep exactly this per-element order, so results never depend on the path.
static inline float cs_dot_f32(const float *a, const float *b, int n) {
    cs_v8 acc = cs_v8_zero();
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8) acc = cs_v8_fma(cs_v8_load(a + i), cs_v8_load(b + i), acc);
    float s = cs_v8_sum(acc);
    for (int i = n8; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

#endif
