// Token sampling on the GPU: one CTA of 1024 threads per row of logits, no sort of the
// vocabulary. Semantics and order of operations are those of the CPU sampler
// (engine/sampler.h); only the random source differs (Philox, see below).
//
// Every element has a 50-bit key, its (penalised or raw) logit's bits made order-preserving
// above (2^18 - 1 - id): larger key = larger logit, then lower id. Keys are unique, so every
// "best k" or "best prefix" is the set {key >= T} for one threshold T, and ties at a cut go to
// the lower id exactly as the CPU sampler breaks them.
//
// Per row (sweeps read the whole row from global memory / L2; everything else is in shared
// memory):
//   A. one sweep: log-sum-exp of the raw logits (online max and sum), the number of finite raw
//      logits, and the argmax (largest key) of the penalised logits. Greedy rows stop here
//      unless they want logprobs.
//   B. one sweep: histograms over 1024 buckets of 1/32 nat below the max, counting tokens
//      (raw, for the top logprobs) and counting and weighing them (penalised, scaled by 1/T,
//      only the tokens min-p keeps). Block scans locate the bucket holding each cut: the k-th
//      token for top-k, the token where the mass reaches top_p for top-p (when top-k cuts, the
//      top-p bucket is found after the top-k threshold, because top-p renormalises after top-k).
//   C. one sweep: when every token at or above a cut bucket fits in shared memory (4096
//      penalised candidates, 512 raw), they are copied there, and everything after this works
//      on that list. Otherwise the later steps sweep the row again (slower, never wrong).
//   D. the exact threshold inside a cut bucket: radix select on the key, 8 bits per pass,
//      starting below the bits that all of the bucket's keys share (a min/max pass finds them).
//   E. Gumbel-max over the kept set {eligible, key >= T}: argmax of (l_i - m) / T + g_i with
//      g_i = -log(E_i), E_i = -log(1 - u_i), u_i from Philox4x32-10 (key = seed, counter =
//      (i / 4, 0, step lo, step hi), word i % 4). One pass, no CDF; for a given (seed, step)
//      the result does not depend on the launch configuration.
//   F. the top logprobs: the raw keys >= the n_logprobs-th, ranked (at most 20 of them).
// Probability mass is summed in 64-bit fixed point (2^40 = p_max) with 32-bit shared atomics,
// so histogram bins, radix bins and prefix sums agree exactly with one another.
//
// Penalties are not applied in place until the end: the penalised ids are marked in a shared
// bitmap, every sweep skips them in the row and visits them again through the penalty entries
// with their penalised value. So the raw logits stay readable for the logprobs, and no
// workspace is needed; the penalised values are written back last, as the CPU sampler leaves
// them.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

constexpr int NT = 1024;                  // threads per row
constexpr int NWARP = NT / 32;
constexpr int NB = NT;                    // buckets of the first split: one per thread in scans
constexpr float BUCKETS_PER_NAT = 32.0f;  // the last bucket takes everything >= 32 nats down
constexpr int RADIX_BITS = 8;
constexpr int RADIX = 1 << RADIX_BITS;    // bins of one radix pass: 8 per lane of one warp
constexpr int CAP_P = 4096;               // penalised candidates kept in shared memory
constexpr int CAP_R = 512;                // raw candidates for the top logprobs
constexpr int ID_BITS = 18;
constexpr int MAX_VOCAB = 1 << ID_BITS;   // 262144
constexpr float GREEDY_EPS = 1e-5f;       // = CS_SAMPLER_GREEDY_EPS (engine/sampler.h)
constexpr int MAXLP = CS_CUDA_MAX_LOGPROBS;
constexpr float MASS_ONE = 1099511627776.0f; // 2^40: fixed-point unit of probability mass
constexpr unsigned FULL = 0xffffffffu;

static_assert(RADIX == 32 * 8, "the radix scan gives each lane of warp 0 eight bins");
static_assert(NWARP == 32, "block reductions finish in one warp");

struct Smem {
    uint32_t pcnt[NB], pmlo[NB], pmhi[NB]; // penalised buckets: count, mass (low/high words)
    uint32_t rcnt[NB];                     // raw buckets: count
    uint32_t hcnt[RADIX], hmlo[RADIX], hmhi[RADIX]; // one radix pass
    uint64_t plist[CAP_P];                 // penalised candidate keys
    uint64_t rlist[CAP_R];                 // raw candidate keys
    uint64_t top[MAXLP];                   // raw top keys, most likely first
    uint64_t gathered[MAXLP];              // raw top keys in arrival order
    uint64_t red[NWARP + 1];               // reduction / scan scratch
    uint64_t cut_v[4];
    uint64_t step_goal, step_mass_above, step_bin_mass;
    int cut_b, step_d, step_done;
    uint32_t plist_n, rlist_n, n_gathered;
    // followed by the bitmap of penalised ids: (vocab + 31) / 32 words
};

// ---- keys -----------------------------------------------------------------------------

__device__ __forceinline__ uint64_t make_key(float l, int i) {
    uint32_t u = __float_as_uint(l == 0.0f ? 0.0f : l); // -0 and +0 compare equal: one key
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)u << ID_BITS) | (uint32_t)(MAX_VOCAB - 1 - i);
}

__device__ __forceinline__ float key_value(uint64_t k) {
    uint32_t u = (uint32_t)(k >> ID_BITS);
    u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
    return __uint_as_float(u);
}

__device__ __forceinline__ int key_id(uint64_t k) {
    return MAX_VOCAB - 1 - (int)(k & (uint64_t)(MAX_VOCAB - 1));
}

// ---- Philox4x32-10 (Salmon et al., SC'11), written from its definition ------------------

__host__ __device__ __forceinline__ uint32_t mulhi32(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return (uint32_t)(((uint64_t)a * b) >> 32);
#endif
}

__host__ __device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const uint32_t hi0 = mulhi32(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        const uint32_t hi1 = mulhi32(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    }
    return c;
}

// Gumbel noise from 32 random bits: -log(E), E = -log(1 - v) ~ Exp(1). log1pf keeps E exact
// in relative terms when it is small, which is where the winners are. v is the middle of the
// bits' interval, kept below 1: v = 0 would give +inf noise (a token that wins whatever its
// logit, 2^-32 a token a draw) and v = 1 -inf; the noise stays within [-2.8, 22.9].
__device__ __forceinline__ float gumbel(uint32_t bits) {
    const float v = fminf(fmaf((float)bits, 0x1p-32f, 0x1p-33f), 0x1.fffffep-1f);
    const float e = -log1pf(-v);
    return -__logf(e);
}

// ---- block-wide helpers (every thread calls them) ---------------------------------------

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }
__device__ __forceinline__ int warp_id() { return threadIdx.x >> 5; }

struct OpMaxU64 { __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a > b ? a : b; } };
struct OpMinU64 { __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a < b ? a : b; } };
struct OpAddU64 { __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a + b; } };
struct OpAddF64 { __device__ double operator()(double a, double b) const { return a + b; } };
struct OpMaxF32 { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };

template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL, v, o));
    return v;
}

template <class T, class Op>
__device__ T block_reduce(Smem &S, T v, Op op) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "scratch slots are 8 bytes");
    T *s = reinterpret_cast<T *>(S.red); // T is 4 or 8 bytes: slots are reused at T's stride
    v = warp_reduce(v, op);
    if (lane_id() == 0) s[warp_id()] = v;
    __syncthreads();
    if (warp_id() == 0) {
        T w = warp_reduce(s[lane_id()], op);
        if (lane_id() == 0) s[NWARP] = w;
    }
    __syncthreads();
    const T r = s[NWARP];
    __syncthreads(); // scratch free again
    return r;
}

// Inclusive prefix sum of one value per thread (thread order); *total gets the sum of all.
__device__ uint64_t block_scan(Smem &S, uint64_t v, uint64_t *total) {
    const int lane = lane_id(), w = warp_id();
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const uint64_t t = __shfl_up_sync(FULL, v, o);
        if (lane >= o) v += t;
    }
    if (lane == 31) S.red[w] = v;
    __syncthreads();
    if (w == 0) {
        uint64_t t = S.red[lane];
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const uint64_t u = __shfl_up_sync(FULL, t, o);
            if (lane >= o) t += u;
        }
        S.red[lane] = t;
    }
    __syncthreads();
    if (w > 0) v += S.red[w - 1];
    *total = S.red[NWARP - 1];
    __syncthreads();
    return v;
}

// Thread t holds bucket t's value v of the quantity the cut is about, its inclusive prefix
// incl, and the same (v2, incl2) of a second quantity to report. Finds the first bucket whose
// inclusive prefix reaches target (>= 1): b = -1 when the total stays below. `allowed` lets a
// thread take its bucket out of the search.
struct Cut {
    int b;
    uint64_t before, incl;   // the quantity's prefix before b and through b
    uint64_t before2, incl2; // the second quantity's
};

__device__ Cut find_cut(Smem &S, bool allowed, uint64_t v, uint64_t incl, uint64_t v2,
                        uint64_t incl2, uint64_t target) {
    if (threadIdx.x == 0) S.cut_b = -1;
    __syncthreads();
    if (allowed && incl >= target && incl - v < target) { // at most one thread
        S.cut_b = threadIdx.x;
        S.cut_v[0] = incl - v;
        S.cut_v[1] = incl;
        S.cut_v[2] = incl2 - v2;
        S.cut_v[3] = incl2;
    }
    __syncthreads();
    Cut c = {S.cut_b, 0, 0, 0, 0};
    if (c.b >= 0) c.before = S.cut_v[0], c.incl = S.cut_v[1], c.before2 = S.cut_v[2], c.incl2 = S.cut_v[3];
    __syncthreads();
    return c;
}

// Adds q to a 64-bit counter kept as two 32-bit words (32-bit shared atomics are native; the
// 64-bit ones are compare-and-swap loops). The carry out of the low word goes to the high one.
__device__ __forceinline__ void add_mass(uint32_t *lo, uint32_t *hi, int b, uint64_t q) {
    if (q == 0) return;
    const uint32_t ql = (uint32_t)q;
    uint32_t qh = (uint32_t)(q >> 32);
    if (ql) {
        const uint32_t old = atomicAdd(&lo[b], ql);
        qh += (uint32_t)(old + ql < old);
    }
    if (qh) atomicAdd(&hi[b], qh);
}

__device__ __forceinline__ uint64_t read_mass(const uint32_t *lo, const uint32_t *hi, int b) {
    return ((uint64_t)hi[b] << 32) | lo[b];
}

__device__ __forceinline__ uint64_t mass_q(float p) { return __float2ull_rn(p * MASS_ONE); }

// The mass the top-p prefix must reach: ceil(top_p * z) in [1, z] (z >= 1), so that
// "prefix >= target" on integers is "prefix >= top_p * z".
__device__ __forceinline__ uint64_t top_p_target(float top_p, uint64_t z) {
    const double t = ceil((double)top_p * (double)z);
    return t < 1.0 ? 1 : t >= (double)z ? z : (uint64_t)t;
}

// ---- one row ---------------------------------------------------------------------------

struct Row {
    float *x; // (V) raw logits until the write-back at the very end
    int V;
    bool vec; // 16-byte aligned: groups of 4 are one float4 load
    bool pen; // some penalty is on and the row has entries
    const uint32_t *bitmap;
    int pen_start, pen_len;
    const int32_t *pen_ids, *pen_counts;
    const uint8_t *pen_in_prompt;
    float rep, freq, pres;
};

// The CPU sampler's arithmetic step by step, without fused multiply-adds.
__device__ __forceinline__ float penalise(const Row &R, float l, int32_t count, uint8_t in_prompt) {
    if (R.rep != 1.0f && (in_prompt || count > 0))
        l = l > 0.0f ? __fdiv_rn(l, R.rep) : __fmul_rn(l, R.rep);
    if (count > 0) {
        l = __fsub_rn(l, __fmul_rn(R.freq, (float)count));
        l = __fsub_rn(l, R.pres);
    }
    return l;
}

__device__ __forceinline__ bool is_penalised(const Row &R, int i) {
    return R.pen && ((R.bitmap[i >> 5] >> (i & 31)) & 1u);
}

// f(x, i) for every element of the row with its raw value. Thread t takes the groups of four
// t, t + NT, ... (coalesced 16-byte loads), UNROLL groups per iteration, all loaded before any
// is used so that each thread keeps several loads in flight.
constexpr int UNROLL = 2;

__device__ __forceinline__ void load_group(const Row &R, int g, float v[4]) {
    const int i0 = g << 2;
    if (R.vec && i0 + 4 <= R.V) {
        const float4 t = reinterpret_cast<const float4 *>(R.x)[g];
        v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
    } else {
#pragma unroll
        for (int j = 0; j < 4; j++) v[j] = i0 + j < R.V ? R.x[i0 + j] : 0.0f;
    }
}

template <class F>
__device__ __forceinline__ void for_row(const Row &R, F f) {
    const int ng = (R.V + 3) >> 2;
    for (int g0 = threadIdx.x; g0 < ng; g0 += UNROLL * NT) {
        float v[UNROLL][4];
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
            if (g0 + u * NT < ng) load_group(R, g0 + u * NT, v[u]);
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int i0 = (g0 + u * NT) << 2;
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (i0 + j < R.V) f(v[u][j], i0 + j);
        }
    }
}

// f(l, id) for every penalty entry with its penalised value. Ids are distinct within a row
// (the contract); an id outside [0, V) is ignored.
template <class F>
__device__ __forceinline__ void for_pen_entries(const Row &R, F f) {
    if (!R.pen) return;
    for (int j = threadIdx.x; j < R.pen_len; j += NT) {
        const int e = R.pen_start + j;
        const int id = R.pen_ids[e];
        if (id < 0 || id >= R.V) continue;
        f(penalise(R, R.x[id], R.pen_counts[e], R.pen_in_prompt[e]), id);
    }
}

// One sweep feeding both tracks: fr(x, i) with every raw value, fp(l, i) with every
// penalised value (each element exactly once).
template <class FR, class FP>
__device__ __forceinline__ void sweep(const Row &R, FR fr, FP fp) {
    for_row(R, [&](float x, int i) {
        fr(x, i);
        if (!is_penalised(R, i)) fp(x, i);
    });
    for_pen_entries(R, fp);
}

template <class FP>
__device__ __forceinline__ void sweep_pen(const Row &R, FP fp) {
    sweep(R, [](float, int) {}, fp);
}

// The penalised distribution of a non-greedy row: p = exp((l - m) / T), p_max = 1.
struct Dist {
    float m, inv_t, min_p, scale; // scale = inv_t * BUCKETS_PER_NAT
};

// Whether min-p (and underflow) keeps l, with logp = (l - m) / T and p = exp(logp) computed
// as the CPU sampler does. NaN and -inf are never kept.
__device__ __forceinline__ bool weigh(const Dist &D, float l, float *logp, float *p) {
    if (!(l > -INFINITY)) {
        *logp = -INFINITY;
        *p = 0.0f;
        return false;
    }
    if (l == D.m) { // also covers m == +inf
        *logp = 0.0f;
        *p = 1.0f;
    } else {
        *logp = (l - D.m) * D.inv_t;
        *p = *logp >= -87.3f ? expf(*logp) : 0.0f; // the CPU's cut: exp would be subnormal
    }
    return *p > 0.0f && *p >= D.min_p;
}

// Bucket of l <= m: 1/scale-wide slices below m, the last one open. Monotone (larger l, same
// or lower bucket), so each bucket is one contiguous range of keys.
__device__ __forceinline__ int bucket_of(float l, float m, float scale) {
    if (l == m) return 0;
    const float d = (m - l) * scale;
    return d < (float)(NB - 1) ? (int)d : NB - 1;
}

// ---- exact threshold inside one bucket: radix select on the keys -------------------------

// A source of candidates calls f(key, bucket, mass) for each of them.
struct PenSrc {
    const Row *R;
    const Dist *D;
    const uint64_t *list; // non-NULL: the shared list of n candidates, else the whole row
    int n;
    template <class F>
    __device__ __forceinline__ void operator()(F f) const {
        const Dist &d = *D;
        if (list) {
            for (int j = threadIdx.x; j < n; j += NT) {
                const uint64_t k = list[j];
                const float l = key_value(k);
                float logp, p;
                weigh(d, l, &logp, &p); // true: only kept tokens were listed
                f(k, bucket_of(l, d.m, d.scale), mass_q(p));
            }
        } else {
            sweep_pen(*R, [&](float l, int i) {
                float logp, p;
                if (weigh(d, l, &logp, &p)) f(make_key(l, i), bucket_of(l, d.m, d.scale), mass_q(p));
            });
        }
    }
};

struct RawSrc {
    const Row *R;
    float m_raw;
    template <class F>
    __device__ __forceinline__ void operator()(F f) const {
        const float m = m_raw;
        for_row(*R, [&](float x, int i) {
            if (x > -INFINITY) f(make_key(x, i), bucket_of(x, m, BUCKETS_PER_NAT), (uint64_t)0);
        });
    }
};

struct Pick {
    uint64_t T;    // keep the group's keys >= T
    uint64_t mass; // by count: the mass of what is kept
};

// The group is the candidates in bucket b with key >= lo (non-empty). By count: the goal-th
// best of the group (goal >= 1), and the mass of the goal best. By mass: the smallest best-first
// prefix whose mass reaches goal (>= 1, at most the group's mass).
template <class Src>
__device__ Pick resolve(Smem &S, const Src &src, int b, uint64_t lo, bool by_mass, uint64_t goal) {
    uint64_t mn = ~0ull, mx = 0, gq = 0, gc = 0;
    src([&](uint64_t k, int kb, uint64_t q) {
        if (kb == b && k >= lo) {
            mn = k < mn ? k : mn;
            mx = k > mx ? k : mx;
            gq += q;
            gc++;
        }
    });
    mn = block_reduce(S, mn, OpMinU64());
    mx = block_reduce(S, mx, OpMaxU64());
    gq = block_reduce(S, gq, OpAddU64());
    gc = block_reduce(S, gc, OpAddU64());
    if (gc == 0) return {lo, 0};                      // not reached: the group was counted
    if (mn == mx || (!by_mass && goal >= gc)) return {mn, gq}; // the whole group

    // Keys of the group share the bits above hb; each pass fixes the next (up to) 8 bits.
    int hb = 63 - __clzll((long long)(mn ^ mx));
    uint64_t prefix = mn >> (hb + 1), mass = 0;
    for (;;) {
        const int s = hb >= RADIX_BITS - 1 ? hb - (RADIX_BITS - 1) : 0;
        const int w = hb - s + 1;
        for (int j = threadIdx.x; j < RADIX; j += NT) S.hcnt[j] = S.hmlo[j] = S.hmhi[j] = 0;
        __syncthreads();
        src([&](uint64_t k, int kb, uint64_t q) {
            if (kb == b && k >= lo && (k >> (hb + 1)) == prefix) {
                const int d = (int)((k >> s) & ((1u << w) - 1));
                atomicAdd(&S.hcnt[d], 1u);
                add_mass(S.hmlo, S.hmhi, d, q);
            }
        });
        __syncthreads();
        if (warp_id() == 0) {
            // Lane L owns bins 255 - 8L - j, j = 0..7: lane 0 the best ones.
            const int lane = lane_id();
            uint64_t sc = 0, sq = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const int d = RADIX - 1 - 8 * lane - j;
                sc += S.hcnt[d];
                sq += read_mass(S.hmlo, S.hmhi, d);
            }
            uint64_t ic = sc, iq = sq;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const uint64_t tc = __shfl_up_sync(FULL, ic, o), tq = __shfl_up_sync(FULL, iq, o);
                if (lane >= o) ic += tc, iq += tq;
            }
            const unsigned hit = __ballot_sync(FULL, by_mass ? iq >= goal : ic >= goal);
            if (hit == 0) { // not reached: the goal never exceeds the group
                if (lane == 0) S.step_d = -1;
            } else if (lane == __ffs(hit) - 1) {
                uint64_t ac = ic - sc, aq = iq - sq; // what the better lanes hold
                int d = RADIX - 1 - 8 * lane;
                uint64_t c = S.hcnt[d], q = read_mass(S.hmlo, S.hmhi, d);
                // this lane's bins hold the goal: stop at the first that reaches it (the last
                // one, d = 255 - 8L - 7, must if the others do not)
                for (int j = 0; j < 7 && !(by_mass ? aq + q >= goal : ac + c >= goal); j++) {
                    ac += c, aq += q;
                    d--;
                    c = S.hcnt[d];
                    q = read_mass(S.hmlo, S.hmhi, d);
                }
                const uint64_t g = by_mass ? goal - aq : goal - ac;
                S.step_d = d;
                S.step_goal = g;
                S.step_mass_above = aq;
                S.step_bin_mass = q;
                S.step_done = by_mass ? c == 1 : c == g;
            }
        }
        __syncthreads();
        const int d = S.step_d;
        if (d < 0) return {mn, gq};
        goal = S.step_goal;
        mass += S.step_mass_above;
        prefix = (prefix << w) | (uint64_t)d;
        if (S.step_done) {
            mass += S.step_bin_mass;
            const uint64_t t = prefix << s; // the lowest key with this prefix
            return {t > mn ? t : mn, mass};
        }
        hb = s - 1;
        if (hb < 0) return {prefix, mass}; // not reached: a one-key bin is always done
        __syncthreads(); // everyone has read step_* before the next pass overwrites them
    }
}

// ---- the kernel --------------------------------------------------------------------------

struct Args {
    int32_t *ids;
    float *logprob;
    int32_t *top_ids;
    float *top_lp;
    float *logits;
    int vocab;
    const cs_cuda_sample_params *params;
    const int32_t *pen_ids, *pen_counts;
    const uint8_t *pen_in_prompt;
};

__global__ void __launch_bounds__(NT, 1) sample_rows(Args a) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    Smem &S = *reinterpret_cast<Smem *>(smem_raw);
    uint32_t *bitmap = reinterpret_cast<uint32_t *>(smem_raw + sizeof(Smem));
    const int r = blockIdx.x, tid = threadIdx.x;
    const cs_cuda_sample_params P = a.params[r];

    Row R;
    R.x = a.logits + (size_t)r * (size_t)a.vocab;
    R.V = a.vocab;
    R.vec = ((uintptr_t)R.x & 15) == 0;
    R.rep = P.repetition_penalty;
    R.freq = P.frequency_penalty;
    R.pres = P.presence_penalty;
    R.pen = (R.rep != 1.0f || R.freq != 0.0f || R.pres != 0.0f) && P.pen_len > 0;
    R.bitmap = bitmap;
    R.pen_start = P.pen_start;
    R.pen_len = P.pen_len;
    R.pen_ids = a.pen_ids;
    R.pen_counts = a.pen_counts;
    R.pen_in_prompt = a.pen_in_prompt;
    const bool greedy = P.temperature < GREEDY_EPS; // as the CPU sampler
    const int nlp = P.n_logprobs < 0 ? 0 : P.n_logprobs > MAXLP ? MAXLP : P.n_logprobs;

    if (R.pen) {
        for (int j = tid; j < (R.V + 31) >> 5; j += NT) bitmap[j] = 0;
        __syncthreads();
        for (int j = tid; j < R.pen_len; j += NT) {
            const int id = R.pen_ids[R.pen_start + j];
            if (id >= 0 && id < R.V) atomicOr(&bitmap[id >> 5], 1u << (id & 31));
        }
        __syncthreads();
    }

    // A. raw log-sum-exp (online: per-thread max and sum relative to it), finite count, and
    // the penalised argmax as the largest key.
    float rmax = -INFINITY;
    double rsum = 0.0;
    uint64_t rfin = 0, best = 0;
    sweep(R,
          [&](float x, int) {
              if (!(x > -INFINITY)) return;
              rfin++;
              if (x > rmax) {
                  rsum = rmax == -INFINITY ? 1.0 : rsum * (double)expf(rmax - x) + 1.0;
                  rmax = x;
              } else {
                  rsum += x == rmax ? 1.0 : (double)expf(x - rmax);
              }
          },
          [&](float l, int i) {
              if (l > -INFINITY) {
                  const uint64_t k = make_key(l, i);
                  best = k > best ? k : best;
              }
          });
    const float m_raw = block_reduce(S, rmax, OpMaxF32());
    const double sum_raw = block_reduce(
        S, rsum == 0.0 ? 0.0 : rsum * (rmax == m_raw ? 1.0 : (double)expf(rmax - m_raw)), OpAddF64());
    const uint64_t n_fin = block_reduce(S, rfin, OpAddU64());
    best = block_reduce(S, best, OpMaxU64());
    const double log_sum = log(sum_raw);
    // log_softmax of a raw logit, written as the CPU sampler does (x == m == +inf: -log_sum)
    auto raw_logprob = [&](float x) {
        return (float)(x == m_raw ? -log_sum : ((double)x - (double)m_raw) - log_sum);
    };

    // The non-greedy pipeline's parameters.
    Dist D;
    D.m = best ? key_value(best) : -INFINITY;
    D.inv_t = greedy ? 1.0f : __fdiv_rn(1.0f, P.temperature);
    D.min_p = P.min_p;
    D.scale = D.inv_t * BUCKETS_PER_NAT;
    const bool top_p_on = P.top_p < 1.0f;
    const bool sel = !greedy && best != 0 && (P.top_k > 0 || top_p_on);
    const uint64_t n_raw_top = nlp < (int)n_fin ? (uint64_t)nlp : n_fin; // n_fin >= 0
    const bool raw_on = n_raw_top > 0;

    // B. bucket histograms. The open last bucket is counted per thread first: a peaked
    // distribution sends most of the vocabulary there.
    uint64_t p_cnt = 0, p_incl = 0, q_bkt = 0, q_incl = 0, n_e = 0, z_e = 0;
    uint64_t r_cnt = 0, r_incl = 0, r_tot = 0;
    if (sel || raw_on) {
        S.pcnt[tid] = S.pmlo[tid] = S.pmhi[tid] = S.rcnt[tid] = 0;
        __syncthreads();
        uint64_t tail_c = 0, tail_q = 0, tail_r = 0;
        sweep(R,
              [&](float x, int) {
                  if (!raw_on || !(x > -INFINITY)) return;
                  const int b = bucket_of(x, m_raw, BUCKETS_PER_NAT);
                  if (b == NB - 1) tail_r++;
                  else atomicAdd(&S.rcnt[b], 1u);
              },
              [&](float l, int) {
                  float logp, p;
                  if (!sel || !weigh(D, l, &logp, &p)) return;
                  const int b = bucket_of(l, D.m, D.scale);
                  const uint64_t q = mass_q(p);
                  if (b == NB - 1) {
                      tail_c++;
                      tail_q += q;
                  } else {
                      atomicAdd(&S.pcnt[b], 1u);
                      add_mass(S.pmlo, S.pmhi, b, q);
                  }
              });
        tail_c = warp_reduce(tail_c, OpAddU64());
        tail_q = warp_reduce(tail_q, OpAddU64());
        tail_r = warp_reduce(tail_r, OpAddU64());
        if (lane_id() == 0) {
            if (tail_c) atomicAdd(&S.pcnt[NB - 1], (uint32_t)tail_c);
            add_mass(S.pmlo, S.pmhi, NB - 1, tail_q);
            if (tail_r) atomicAdd(&S.rcnt[NB - 1], (uint32_t)tail_r);
        }
        __syncthreads();
        p_cnt = S.pcnt[tid];
        q_bkt = read_mass(S.pmlo, S.pmhi, tid);
        r_cnt = S.rcnt[tid];
        p_incl = block_scan(S, p_cnt, &n_e);
        q_incl = block_scan(S, q_bkt, &z_e);
        r_incl = block_scan(S, r_cnt, &r_tot);
    }

    // Where the cuts fall, to the bucket. Top-k first (the k-th best eligible token); top-p
    // here too when top-k does not cut, since the renormalising mass is then all of it.
    const bool cut_k = sel && P.top_k > 0 && (uint64_t)P.top_k < n_e;
    int bk = -1, bp = -1, bc = -1;
    uint64_t need_k = 0, k_mass_before = 0, rest_p = 0, cum_c = 0;
    if (cut_k) {
        const Cut c = find_cut(S, true, p_cnt, p_incl, q_bkt, q_incl, (uint64_t)P.top_k);
        bk = bc = c.b;
        need_k = (uint64_t)P.top_k - c.before;
        k_mass_before = c.before2;
        cum_c = c.incl;
    } else if (sel && top_p_on && n_e > 0) {
        const uint64_t target = top_p_target(P.top_p, z_e);
        const Cut c = find_cut(S, true, q_bkt, q_incl, p_cnt, p_incl, target);
        bp = bc = c.b;
        rest_p = target - c.before;
        cum_c = c.incl2;
    }
    const bool pen_list = bc >= 0 && cum_c <= CAP_P;

    uint64_t need_r = 0;
    int br = -1;
    bool raw_list = false;
    if (raw_on) {
        const Cut c = find_cut(S, true, r_cnt, r_incl, 0, 0, n_raw_top);
        br = c.b;
        need_r = n_raw_top - c.before;
        raw_list = c.incl <= CAP_R;
    }

    // C. copy the candidates at or above the cut buckets into shared memory.
    if (pen_list || raw_list) {
        if (tid == 0) S.plist_n = S.rlist_n = 0;
        __syncthreads();
        sweep(R,
              [&](float x, int i) {
                  if (!raw_list || !(x > -INFINITY) || bucket_of(x, m_raw, BUCKETS_PER_NAT) > br) return;
                  const uint32_t slot = atomicAdd(&S.rlist_n, 1u);
                  if (slot < CAP_R) S.rlist[slot] = make_key(x, i);
              },
              [&](float l, int i) {
                  float logp, p;
                  if (!pen_list || !weigh(D, l, &logp, &p) || bucket_of(l, D.m, D.scale) > bc) return;
                  const uint32_t slot = atomicAdd(&S.plist_n, 1u);
                  if (slot < CAP_P) S.plist[slot] = make_key(l, i);
              });
        __syncthreads();
    }
    const int plist_n = pen_list ? min((int)S.plist_n, CAP_P) : 0;
    const int rlist_n = raw_list ? min((int)S.rlist_n, CAP_R) : 0;

    // D. exact thresholds: the kept set is {eligible, key >= T}.
    int32_t id = -1;
    if (greedy) {
        id = best ? key_id(best) : -1;
    } else if (best != 0 && !(sel && n_e == 0)) {
        const PenSrc src = {&R, &D, pen_list ? S.plist : nullptr, plist_n};
        uint64_t T = 0, z = z_e;
        if (cut_k) {
            const Pick pk = resolve(S, src, bk, 0, false, need_k);
            T = pk.T;
            z = k_mass_before + pk.mass;
            if (top_p_on) { // renormalised over the top-k set: its bucket among 0..bk
                const uint64_t target = top_p_target(P.top_p, z);
                const bool at_bk = tid == bk;
                const Cut c = find_cut(S, tid <= bk, at_bk ? pk.mass : q_bkt, at_bk ? z : q_incl,
                                       0, 0, target);
                bp = c.b;
                rest_p = target - c.before;
            }
        }
        if (top_p_on && bp >= 0) {
            const Pick pp = resolve(S, src, bp, bp == bk ? T : 0, true, rest_p);
            T = pp.T;
        }

        // E. Gumbel-max over the kept set.
        const uint32_t k0 = (uint32_t)P.seed, k1 = (uint32_t)(P.seed >> 32);
        const uint32_t s0 = (uint32_t)P.step, s1 = (uint32_t)(P.step >> 32);
        uint64_t win = 0;
        int cached = -1;
        uint4 rnd = make_uint4(0, 0, 0, 0);
        auto consider = [&](float l, int i) {
            float logp, p;
            if (!(l > -INFINITY) || make_key(l, i) < T || !weigh(D, l, &logp, &p)) return;
            if ((i >> 2) != cached) {
                cached = i >> 2;
                rnd = philox4x32_10(make_uint4((uint32_t)cached, 0u, s0, s1), k0, k1);
            }
            const uint32_t bits = (i & 3) == 0 ? rnd.x : (i & 3) == 1 ? rnd.y : (i & 3) == 2 ? rnd.z : rnd.w;
            const uint64_t k = make_key(logp + gumbel(bits), i);
            win = k > win ? k : win;
        };
        if (pen_list) {
            for (int j = tid; j < plist_n; j += NT) {
                const uint64_t k = S.plist[j];
                if (k >= T) consider(key_value(k), key_id(k));
            }
        } else {
            sweep_pen(R, consider);
        }
        win = block_reduce(S, win, OpMaxU64());
        id = win ? key_id(win) : -1;
    }

    // F. top logprobs: the n_raw_top best raw keys, ranked.
    if (raw_on) {
        if (raw_list) {
            for (int j = tid; j < rlist_n; j += NT) {
                const uint64_t k = S.rlist[j];
                uint64_t rank = 0;
                for (int t = 0; t < rlist_n; t++) rank += S.rlist[t] > k;
                if (rank < n_raw_top) S.top[rank] = k;
            }
        } else {
            const Pick pr = resolve(S, RawSrc{&R, m_raw}, br, 0, false, need_r);
            if (tid == 0) S.n_gathered = 0;
            __syncthreads();
            for_row(R, [&](float x, int i) {
                if (!(x > -INFINITY)) return;
                const uint64_t k = make_key(x, i);
                if (k < pr.T) return;
                const uint32_t slot = atomicAdd(&S.n_gathered, 1u);
                if (slot < MAXLP) S.gathered[slot] = k;
            });
            __syncthreads();
            const int ng = min((int)S.n_gathered, MAXLP);
            if (tid < ng) {
                const uint64_t k = S.gathered[tid];
                int rank = 0;
                for (int t = 0; t < ng; t++) rank += S.gathered[t] > k;
                S.top[rank] = k;
            }
        }
        __syncthreads();
    }
    if (tid < nlp) {
        const size_t o = (size_t)r * MAXLP + tid;
        if ((uint64_t)tid < n_raw_top) {
            const uint64_t k = S.top[tid];
            a.top_ids[o] = key_id(k);
            a.top_lp[o] = raw_logprob(key_value(k));
        } else {
            a.top_ids[o] = -1;
            a.top_lp[o] = -INFINITY;
        }
    }
    if (tid == 0) {
        a.ids[r] = id;
        a.logprob[r] = id >= 0 ? raw_logprob(R.x[id]) : -INFINITY;
    }

    // Last: leave the penalised logits in place, as the CPU sampler does.
    __syncthreads();
    if (R.pen)
        for (int j = tid; j < R.pen_len; j += NT) {
            const int e = R.pen_start + j;
            const int pid = R.pen_ids[e];
            if (pid >= 0 && pid < R.V) R.x[pid] = penalise(R, R.x[pid], R.pen_counts[e], R.pen_in_prompt[e]);
        }
}

size_t smem_bytes(int vocab) { return sizeof(Smem) + (size_t)((vocab + 31) / 32) * sizeof(uint32_t); }

} // namespace

// Contract details beyond cuda_kernels.h: vocab <= 262144 (ids fit the key's 18 bits); a row's
// penalty ids are distinct (the engine builds them so) and ids outside [0, vocab) are ignored;
// top entries past the number of finite raw logits are written as id -1, logprob -inf (the
// CPU sampler's n_top); no workspace is needed, so NULL with 0 bytes is fine.
extern "C" size_t cs_cuda_sample_workspace(int n_rows, int vocab) {
    (void)n_rows;
    (void)vocab;
    return 0; // everything lives in shared memory
}

extern "C" void cs_cuda_sample(int32_t *ids, float *logprob, int32_t *top_ids, float *top_lp,
                               float *logits, int n_rows, int vocab,
                               const cs_cuda_sample_params *params, const int32_t *pen_ids,
                               const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                               void *workspace, size_t workspace_bytes, void *stream) {
    CS_ASSERT(n_rows >= 0 && vocab >= 1 && vocab <= MAX_VOCAB);
    CS_ASSERT(workspace_bytes >= cs_cuda_sample_workspace(n_rows, vocab));
    (void)workspace;
    if (n_rows == 0) return;
    CS_ASSERT(ids && logprob && top_ids && top_lp && logits && params);
    CS_ASSERT(((uintptr_t)logits & 3) == 0);
    const size_t smem = smem_bytes(vocab);
    CUDA_CHECK(cudaFuncSetAttribute(sample_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    Args a = {ids, logprob, top_ids, top_lp, logits, vocab, params, pen_ids, pen_counts, pen_in_prompt};
    sample_rows<<<(unsigned)n_rows, NT, smem, static_cast<cudaStream_t>(stream)>>>(a);
    CUDA_CHECK(cudaGetLastError());
}
