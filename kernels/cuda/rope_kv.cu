// Bias + RoPE + KV append, fused, after the fused QKV projection: one launch writes q to
// q_out and k, v into the paged caches.
//
// Threads work on chunks of 8 consecutive elements of one head (a 2-D grid: chunks of a token
// x tokens): 16-byte loads of bf16 (plus two of the fp32 bias), fp32 math, 16-byte stores,
// and the cos/sin of the chunk's pairs as 16-byte loads from the fp32 table (no trigonometry
// on the device). Common shapes (rope_kv_pairs: head_dim % 16 == 0, NeoX over the whole head
// or adjacent pairs with rope_dim % 8 == 0) give each thread two chunks, j0 and j0 +
// head_dim/2, which for NeoX are each other's partners. Other shapes (rope_kv_tokens) take
// one chunk per thread: NeoX partners rope_dim/2 away are loaded as a second vector when
// rope_dim/2 % 8 == 0, and element by element where a chunk straddles rope_dim/2 or rope_dim.
// The products and sums are rounded separately (__fmul_rn, __fadd_rn: no fused multiply-add),
// as in cs_cpu_rope compiled with -ffp-contract=off, so the fp32 results equal the reference
// bit for bit before the one bf16 rounding on store.
#include <cuda_bf16.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); // .x (low half) = lo
    return *reinterpret_cast<const uint32_t *>(&v);
}

// v[0..8) = float(src[0..8)) (+ bias[0..8) when bias). src 16-byte, bias 16-byte aligned.
__device__ __forceinline__ void load8(float *v, const uint16_t *src, const float *bias) {
    const uint4 q = *reinterpret_cast<const uint4 *>(src);
    v[0] = bf16_lo(q.x); v[1] = bf16_hi(q.x); v[2] = bf16_lo(q.y); v[3] = bf16_hi(q.y);
    v[4] = bf16_lo(q.z); v[5] = bf16_hi(q.z); v[6] = bf16_lo(q.w); v[7] = bf16_hi(q.w);
    if (bias) {
        const float4 a = reinterpret_cast<const float4 *>(bias)[0];
        const float4 b = reinterpret_cast<const float4 *>(bias)[1];
        v[0] += a.x; v[1] += a.y; v[2] += a.z; v[3] += a.w;
        v[4] += b.x; v[5] += b.y; v[6] += b.z; v[7] += b.w;
    }
}

__device__ __forceinline__ void store8(uint16_t *dst, const float *v) {
    *reinterpret_cast<uint4 *>(dst) = make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]),
                                                 pack_bf16x2(v[4], v[5]), pack_bf16x2(v[6], v[7]));
}

// NeoX rotation of 8 consecutive pairs (a, b): x holds one element of each pair, xp the other,
// cs (16-byte aligned) their 8 (cos, sin). first: x are the a's (out a = x_a cos - x_b sin),
// else the b's (out b = x_b cos + x_a sin).
__device__ __forceinline__ void rotate_neox8(float *o, const float *x, const float *xp, const float *cs,
                                             bool first) {
    float c[8], s[8];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const float4 v = reinterpret_cast<const float4 *>(cs)[q];
        c[2 * q] = v.x; s[2 * q] = v.y; c[2 * q + 1] = v.z; s[2 * q + 1] = v.w;
    }
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const float xc = __fmul_rn(x[e], c[e]), ps = __fmul_rn(xp[e], s[e]);
        o[e] = first ? __fsub_rn(xc, ps) : __fadd_rn(xc, ps);
    }
}

// Adjacent-pair rotation of a chunk of 8 (4 pairs); cs (16-byte aligned): their 4 (cos, sin).
__device__ __forceinline__ void rotate_adjacent8(float *o, const float *x, const float *cs) {
    const float4 v0 = reinterpret_cast<const float4 *>(cs)[0], v1 = reinterpret_cast<const float4 *>(cs)[1];
    const float c[4] = {v0.x, v0.z, v1.x, v1.z}, s[4] = {v0.y, v0.w, v1.y, v1.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float x0 = x[2 * k], x1 = x[2 * k + 1];
        o[2 * k] = __fsub_rn(__fmul_rn(x0, c[k]), __fmul_rn(x1, s[k]));
        o[2 * k + 1] = __fadd_rn(__fmul_rn(x1, c[k]), __fmul_rn(x0, s[k]));
    }
}

// How a launch rotates (picked on the host, one kernel each so that none pays for the others'
// registers). The vector modes need the table 16-byte aligned and every rotated chunk wholly
// in [0, half) or [half, rope_dim) (NeoX, half % 8 == 0) or in [0, rope_dim) (adjacent,
// rope_dim % 8 == 0).
enum RopeMode { kNeoxVec, kAdjacentVec, kAnyElementwise };

// Rotates chunk x (elements j0 .. j0+8 of one head, bias included) into o. src is the head's
// row in qkv, b its bias (or NULL), cs the token's row of the table (rope_dim / 2 pairs).
template <RopeMode M>
__device__ __forceinline__ void rotate8(float *o, const float *x, const uint16_t *src, const float *b,
                                        const float *cs, int j0, int rope_dim, int neox) {
    const int half = rope_dim / 2;
    if (M == kNeoxVec) {
        const bool first = j0 < half;
        const int i0 = first ? j0 : j0 - half, p0 = first ? j0 + half : j0 - half;
        float xp[8];
        load8(xp, src + p0, b ? b + p0 : nullptr);
        rotate_neox8(o, x, xp, cs + 2 * i0, first); // pairs i0 .. i0+8
    } else if (M == kAdjacentVec) {
        rotate_adjacent8(o, x, cs + j0); // pairs j0/2 .. j0/2+4
    } else {
        // any even rope_dim: element by element, partners of NeoX pairs loaded one by one
        const float2 *cs2 = reinterpret_cast<const float2 *>(cs);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int j = j0 + e;
            if (j >= rope_dim) continue;
            float xp;
            if (!neox) {
                xp = x[e ^ 1];
            } else {
                const int p = j < half ? j + half : j - half;
                xp = __uint_as_float((uint32_t)src[p] << 16);
                if (b) xp += b[p];
            }
            // pair (a, b): out[a] = x_a cos - x_b sin, out[b] = x_b cos + x_a sin
            const bool first = neox ? j < half : (j & 1) == 0;
            const float2 t = cs2[neox ? (j < half ? j : j - half) : j >> 1];
            const float xc = __fmul_rn(x[e], t.x), ps = __fmul_rn(xp, t.y);
            o[e] = first ? __fsub_rn(xc, ps) : __fadd_rn(xc, ps);
        }
    }
}

// grid (ceil(per_tok / blockDim), min(n_tok, 65535)), per_tok = (n_head + 2 n_kv) * head_dim
// / 8 chunks: thread chunk of tokens blockIdx.y, + gridDim.y, ... No barriers, so threads past
// the last chunk return at once. cos_sin: (max_pos, rope_dim / 2, 2).
template <RopeMode M>
__global__ void rope_kv_tokens(uint16_t *__restrict__ q_out, uint16_t *__restrict__ k_cache,
                               uint16_t *__restrict__ v_cache, const uint16_t *__restrict__ qkv,
                               const float *__restrict__ bias, const int32_t *__restrict__ pos,
                               const int32_t *__restrict__ slots, const float *__restrict__ cos_sin,
                               int n_tok, int n_head, int n_kv, int head_dim, int rope_dim, int neox) {
    const int hd8 = head_dim / 8;
    const int n_heads = n_head + 2 * n_kv;
    const int chunk = blockIdx.x * blockDim.x + threadIdx.x;
    if (chunk >= n_heads * hd8) return;
    const int h = chunk / hd8;          // head among q, k, v heads
    const int j0 = (chunk - h * hd8) * 8; // first element of the chunk within the head
    const bool rotated = h < n_head + n_kv && j0 < rope_dim; // a q or k chunk with rotated dims
    const int64_t width = (int64_t)n_heads * head_dim;  // qkv row length
    const int64_t kv_dim = (int64_t)n_kv * head_dim;    // cache row length
    const int64_t col = (int64_t)h * head_dim;
    const float *b = bias ? bias + col : nullptr;
    for (int64_t t = blockIdx.y; t < n_tok; t += gridDim.y) {
        const uint16_t *src = qkv + t * width + col;
        float x[8], o[8];
        load8(x, src + j0, b ? b + j0 : nullptr);
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = x[e];
        if (rotated) rotate8<M>(o, x, src, b, cos_sin + (int64_t)pos[t] * rope_dim, j0, rope_dim, neox);

        uint16_t *dst;
        if (h < n_head) dst = q_out + (t * n_head + h) * (int64_t)head_dim;
        else if (h < n_head + n_kv) dst = k_cache + (int64_t)slots[t] * kv_dim + (int64_t)(h - n_head) * head_dim;
        else dst = v_cache + (int64_t)slots[t] * kv_dim + (int64_t)(h - n_head - n_kv) * head_dim;
        store8(dst + j0, o);
    }
}

// The common shapes, head_dim % 16 == 0 with NeoX over the whole head (rope_dim ==
// head_dim) or adjacent pairs (rope_dim % 8 == 0), table 16-byte aligned: one thread per two
// chunks of a head, j0 and j0 + head_dim / 2 (for NeoX each other's rotation partners), so
// each thread has two independent 16-byte loads in flight and no chunk is loaded twice.
// grid (ceil(units / blockDim), min(n_tok, 65535)), units = (n_head + 2 n_kv) * head_dim / 16.
template <bool NEOX>
__global__ void rope_kv_pairs(uint16_t *__restrict__ q_out, uint16_t *__restrict__ k_cache,
                              uint16_t *__restrict__ v_cache, const uint16_t *__restrict__ qkv,
                              const float *__restrict__ bias, const int32_t *__restrict__ pos,
                              const int32_t *__restrict__ slots, const float *__restrict__ cos_sin,
                              int n_tok, int n_head, int n_kv, int head_dim, int rope_dim) {
    const int hd16 = head_dim / 16; // units per head
    const int n_heads = n_head + 2 * n_kv;
    const int unit = blockIdx.x * blockDim.x + threadIdx.x;
    if (unit >= n_heads * hd16) return;
    const int h = unit / hd16;
    const int j0 = (unit - h * hd16) * 8, j1 = j0 + head_dim / 2;
    const bool qk = h < n_head + n_kv;
    const int64_t width = (int64_t)n_heads * head_dim;
    const int64_t kv_dim = (int64_t)n_kv * head_dim;
    const int64_t col = (int64_t)h * head_dim;
    const float *b = bias ? bias + col : nullptr;
    for (int64_t t = blockIdx.y; t < n_tok; t += gridDim.y) {
        const uint16_t *src = qkv + t * width + col;
        float x0[8], x1[8], o0[8], o1[8];
        load8(x0, src + j0, b ? b + j0 : nullptr);
        load8(x1, src + j1, b ? b + j1 : nullptr);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            o0[e] = x0[e];
            o1[e] = x1[e];
        }
        if (qk) {
            const float *cs = cos_sin + (int64_t)pos[t] * rope_dim;
            if (NEOX) {
                rotate_neox8(o0, x0, x1, cs + 2 * j0, true); // pairs j0 .. j0+8
                rotate_neox8(o1, x1, x0, cs + 2 * j0, false);
            } else {
                if (j0 < rope_dim) rotate_adjacent8(o0, x0, cs + j0);
                if (j1 < rope_dim) rotate_adjacent8(o1, x1, cs + j1);
            }
        }
        uint16_t *dst;
        if (h < n_head) dst = q_out + (t * n_head + h) * (int64_t)head_dim;
        else if (qk) dst = k_cache + (int64_t)slots[t] * kv_dim + (int64_t)(h - n_head) * head_dim;
        else dst = v_cache + (int64_t)slots[t] * kv_dim + (int64_t)(h - n_head - n_kv) * head_dim;
        store8(dst + j0, o0);
        store8(dst + j1, o1);
    }
}

} // namespace

extern "C" void cs_cuda_rope_kv_write(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache,
                                      const uint16_t *qkv, const float *bias, const int32_t *pos,
                                      const int32_t *slots, const float *cos_sin, int n_tok,
                                      int n_head, int n_kv, int head_dim, int rope_dim, int neox,
                                      void *stream) {
    CS_ASSERT(n_tok >= 0 && n_head > 0 && n_kv > 0 && head_dim > 0 && head_dim % 8 == 0);
    CS_ASSERT(rope_dim >= 0 && rope_dim % 2 == 0 && rope_dim <= head_dim);
    CS_ASSERT(((uintptr_t)q_out & 15) == 0 && ((uintptr_t)k_cache & 15) == 0 &&
              ((uintptr_t)v_cache & 15) == 0 && ((uintptr_t)qkv & 15) == 0 &&
              ((uintptr_t)bias & 15) == 0 && ((uintptr_t)cos_sin & 7) == 0);
    CS_ASSERT(((uintptr_t)pos & 3) == 0 && ((uintptr_t)slots & 3) == 0);
    if (n_tok == 0) return;
    const int n_heads = n_head + 2 * n_kv, half = rope_dim / 2;
    const bool aligned = ((uintptr_t)cos_sin & 15) == 0; // for the 16-byte table loads
    const unsigned grid_y = (unsigned)(n_tok < 65535 ? n_tok : 65535);
    const int threads = 128;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (aligned && head_dim % 16 == 0 && (neox ? rope_dim == head_dim : rope_dim % 8 == 0)) {
        const int units = n_heads * (head_dim / 16);
        const dim3 grid((unsigned)((units + threads - 1) / threads), grid_y);
        if (neox)
            rope_kv_pairs<true><<<grid, threads, 0, s>>>(q_out, k_cache, v_cache, qkv, bias, pos, slots,
                                                         cos_sin, n_tok, n_head, n_kv, head_dim, rope_dim);
        else
            rope_kv_pairs<false><<<grid, threads, 0, s>>>(q_out, k_cache, v_cache, qkv, bias, pos, slots,
                                                          cos_sin, n_tok, n_head, n_kv, head_dim, rope_dim);
    } else {
        const int per_tok = n_heads * (head_dim / 8);
        const dim3 grid((unsigned)((per_tok + threads - 1) / threads), grid_y);
#define CS_ROPE_LAUNCH(M)                                                                            \
    rope_kv_tokens<M><<<grid, threads, 0, s>>>(q_out, k_cache, v_cache, qkv, bias, pos, slots, cos_sin, \
                                               n_tok, n_head, n_kv, head_dim, rope_dim, neox)
        if (neox && half % 8 == 0 && aligned) CS_ROPE_LAUNCH(kNeoxVec);
        else if (!neox && rope_dim % 8 == 0 && aligned) CS_ROPE_LAUNCH(kAdjacentVec);
        else CS_ROPE_LAUNCH(kAnyElementwise);
#undef CS_ROPE_LAUNCH
    }
    CUDA_CHECK(cudaGetLastError());
}
