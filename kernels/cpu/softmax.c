// The pieces of a softmax over a vocabulary: the max, the normaliser sum of exp(x - m), and
// the probabilities exp((x - m) * s) themselves. The sampler needs the first for every token's logprob and the
// second for every draw at a temperature; libm's expf one element at a time cost 0.4 ms a row
// over 49152 logits (a quarter of a 256-sequence decode step on the CPU backend).
//
// exp on [-87.3, 0] as in Cephes' expf: k = round(d / ln 2), r = d - k ln 2 (in two parts,
// with FMAs), a degree-5 polynomial in r, times 2^k built from its bits: within 2 ulp of
// expf. Eight lanes accumulate in double, element i in lane i % 8, and are added in a fixed
// order at the end, so the AVX2 and the portable paths give the same bits.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../kernels.h"

#define LOWEST (-87.3f) // below this exp(d) < 2^-126: counted as 0, as are NaNs
#define LOG2E 1.44269504088896341f
#define C1 0.693359375f
#define C2 (-2.12194440e-4f)

static inline float exp_poly(float d) { // d in [LOWEST, 0]
    float k = rintf(d * LOG2E);
    float r = fmaf(-k, C1, d);
    r = fmaf(-k, C2, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float y = fmaf(p, r * r, r) + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

static inline float term(float x, float m) {
    float d = x - m;
    return d >= LOWEST ? exp_poly(d) : 0.0f;
}

float cs_cpu_exp_scaled1(float x, float m, float s) {
    float d = (x - m) * s;
    return d >= LOWEST ? exp_poly(d) : 0.0f;
}

uint16_t cs_cpu_bucket1(float x, float m, float s, int last) {
    if (x == m) return 0;
    const float d = (m - x) * s;
    return d < (float)last ? (uint16_t)(int32_t)d : (uint16_t)last; // false for NaN
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

static inline __m256 exp8(__m256 d) {
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(d, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 nk = _mm256_sub_ps(_mm256_setzero_ps(), k);
    __m256 r = _mm256_fmadd_ps(nk, _mm256_set1_ps(C1), d);
    r = _mm256_fmadd_ps(nk, _mm256_set1_ps(C2), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

double cs_cpu_sum_exp(const float *x, int64_t n, float m) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd(); // lanes 0-3 and 4-7
    const __m256 vm = _mm256_set1_ps(m), lowest = _mm256_set1_ps(LOWEST);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        const __m256 keep = _mm256_cmp_ps(d, lowest, _CMP_GE_OQ); // false for NaN
        const __m256 e = _mm256_and_ps(exp8(_mm256_max_ps(d, lowest)), keep);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double acc[8];
    _mm256_storeu_pd(acc, lo);
    _mm256_storeu_pd(acc + 4, hi);
    for (int j = 0; i < n; i++, j++) acc[j] += (double)term(x[i], m);
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}
void cs_cpu_exp_scaled(const float *x, int64_t n, float m, float s, float *out) {
    const __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(s), lowest = _mm256_set1_ps(LOWEST);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vs);
        const __m256 keep = _mm256_cmp_ps(d, lowest, _CMP_GE_OQ); // false for NaN
        _mm256_storeu_ps(out + i, _mm256_and_ps(exp8(_mm256_max_ps(d, lowest)), keep));
    }
    for (; i < n; i++) out[i] = cs_cpu_exp_scaled1(x[i], m, s);
}
float cs_cpu_max(const float *x, int64_t n) {
    __m256 acc = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(_mm256_loadu_ps(x + i), acc); // a NaN in x keeps acc
    float lanes[8], m = -INFINITY;
    _mm256_storeu_ps(lanes, acc);
    for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
void cs_cpu_bucket16(const float *x, int64_t n, float m, float s, int last, uint16_t *out) {
    const __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(s), vlast = _mm256_set1_ps((float)last);
    const __m256i ilast = _mm256_set1_epi32(last);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 vx = _mm256_loadu_ps(x + i);
        const __m256 d = _mm256_mul_ps(_mm256_sub_ps(vm, vx), vs);
        const __m256 below = _mm256_cmp_ps(d, vlast, _CMP_LT_OQ); // false for NaN
        const __m256 at_max = _mm256_cmp_ps(vx, vm, _CMP_EQ_OQ);
        __m256i b = _mm256_blendv_epi8(ilast, _mm256_cvttps_epi32(d), _mm256_castps_si256(below));
        b = _mm256_andnot_si256(_mm256_castps_si256(at_max), b);
        const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
        _mm_storeu_si128((__m128i *)(out + i), packed);
    }
    for (; i < n; i++) out[i] = cs_cpu_bucket1(x[i], m, s, last);
}
#else
void cs_cpu_bucket16(const float *x, int64_t n, float m, float s, int last, uint16_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = cs_cpu_bucket1(x[i], m, s, last);
}

float cs_cpu_max(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m; // false for NaN
    return m;
}

void cs_cpu_exp_scaled(const float *x, int64_t n, float m, float s, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = cs_cpu_exp_scaled1(x[i], m, s);
}

double cs_cpu_sum_exp(const float *x, int64_t n, float m) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)term(x[i + j], m);
    for (int j = 0; i < n; i++, j++) acc[j] += (double)term(x[i], m);
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}
#endif
