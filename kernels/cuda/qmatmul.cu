// Matmul with int4 / int8 weights (layout: kernels/qpack.h), dequantised in registers and
// multiplied on tensor cores.
//
// out (m, n) = x (m, k) @ w^T. A CTA is 8 warps: 128 weight rows (one 16-row tile per warp) x
// TOK = 8 TT tokens (TT = 1, 2, 4 or 8 m16n8k16 token tiles, by m) x a range of 64-column
// chunks. Per chunk every warp
//   - reads its tile's codes with one (int4, 512 bytes a warp) or two (int8) 16-byte loads per
//     lane, straight into registers, the next chunk's loads in flight while this one computes;
//   - makes the four A fragments with integer ops and packed bf16 FMAs: int4, per pair of
//     weights, one shift and one LOP3 give (128 + q, 128 + q') as bf16, an FMA takes 128 off
//     (exact) and a second gives s q + m, rounded once; int8 goes through fp32 with a byte
//     permute into the mantissa of 2^23 (one PRMT and one FADD per weight), then s q;
//   - runs 4 TT mma against x's chunk, which the CTA stages in shared memory with cp.async
//     (double-buffered) and all 8 warps share.
// For m <= 8 (decode) qgemv does the same work without staging x and with several chunks of
// codes in flight per warp: the weights are the bytes that count, each read once, 16 bytes per
// load, with no int-to-float instruction. qmm<BITS, 1> stays as the MMA path's m <= 8 form.
//
// Split-K: when the row tiles alone make too few CTAs to fill the GPU (n small), the chunks are
// split in P parts (grid z). Each part writes its fp32 partial tile to the workspace; the last
// CTA of an output tile to finish (an atomic counter) sums the P partials in part order, so the
// result does not depend on timing, writes out, and resets the counter to 0 for the next call.
// P depends on the shape only, never on m, so a row's result does not depend on the batch
// within one TT class.
//
// For large m (prefill), dequantise-then-cuBLAS is the fallback: the packed matrix is unpacked
// to bf16 in slices of rows (32 MB at a time, in the workspace) and each slice goes through
// cuBLAS. CUBLAS_MIN_M is where it starts winning (to be tuned on the GPU: bench_qmatmul).
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "../qfrag.h"
#include "mma.cuh"

namespace {

constexpr int WARPS = 8, THREADS = 32 * WARPS, ROWS = 16 * WARPS;
constexpr int XS = 64 + 8; // smem row of a staged x chunk, bf16: 144 bytes, conflict-free 16-byte reads
constexpr int MAX_COUNTERS = 16384;
constexpr size_t COUNTER_BYTES = MAX_COUNTERS * 4;
constexpr int CUBLAS_MIN_M = 256;
constexpr size_t SLICE_BYTES = (size_t)32 << 20;

struct Args {
    void *out;
    const uint16_t *x;
    const uint32_t *codes, *scales;
    float *partials;
    unsigned *counters;
    int out_f32, m, n, k, n_tiles, n_chunks, n_groups, group, chunks_per_part, n_parts;
};

// 16 bytes of weights: read once, so they skip L1.
__device__ __forceinline__ uint4 ldg_once(const uint32_t *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// A lane's codes of chunk c of row tile rt, and the scale words of its rows g and g + 8.
template <int BITS>
__device__ __forceinline__ void load_chunk(const Args &a, int rt, int c, int lane, uint32_t (&w)[BITS == 4 ? 4 : 8],
                                           uint32_t &sm_lo, uint32_t &sm_hi) {
    const uint32_t *p = a.codes + qf_code_index(rt, c, lane, a.n_chunks, BITS);
    const uint4 v = ldg_once(p);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    if constexpr (BITS == 8) {
        const uint4 v2 = ldg_once(p + 4);
        w[4] = v2.x, w[5] = v2.y, w[6] = v2.z, w[7] = v2.w;
    }
    const uint32_t *sp = a.scales + qf_scale_index(rt, c, lane, a.n_groups, a.group);
    sm_lo = __ldg(sp);
    sm_hi = __ldg(sp + 8);
}

__device__ __forceinline__ void store_out(const Args &a, int tok, int row, float v) {
    if (tok >= a.m || row >= a.n) return;
    size_t i = (size_t)tok * a.n + row;
    if (a.out_f32) static_cast<float *>(a.out)[i] = v;
    else static_cast<__nv_bfloat16 *>(a.out)[i] = __float2bfloat16_rn(v);
}

// The end of a CTA's work: with split-K, its partial tile goes to the workspace and the last
// CTA of the output tile sums all parts in part order; then the rows and tokens in range are
// written. Every thread of the CTA calls it (it synchronises).
template <int TT>
__device__ __forceinline__ void finish(const Args &a, float (&acc)[TT][4], int rt, bool live, int tok0) {
    constexpr int TOK = 8 * TT;
    __shared__ int is_last;
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (a.n_parts > 1) {
        const int n_ot = gridDim.x * gridDim.y, ot = blockIdx.y * gridDim.x + blockIdx.x;
        float *mine = a.partials + ((size_t)blockIdx.z * n_ot + ot) * (ROWS * TOK) + (size_t)threadIdx.x * 4 * TT;
#pragma unroll
        for (int tt = 0; tt < TT; tt++)
            reinterpret_cast<float4 *>(mine)[tt] = make_float4(acc[tt][0], acc[tt][1], acc[tt][2], acc[tt][3]);
        __threadfence(); // the partial is visible before the counter says so
        __syncthreads();
        if (threadIdx.x == 0) is_last = atomicAdd(&a.counters[ot], 1u) == (unsigned)a.n_parts - 1;
        __syncthreads();
        if (!is_last) return;
        __threadfence();
#pragma unroll
        for (int tt = 0; tt < TT; tt++) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;
        for (int p = 0; p < a.n_parts; p++) { // in part order: the same sum whoever finishes last
            const float4 *src = reinterpret_cast<const float4 *>(
                a.partials + ((size_t)p * n_ot + ot) * (ROWS * TOK) + (size_t)threadIdx.x * 4 * TT);
#pragma unroll
            for (int tt = 0; tt < TT; tt++) {
                const float4 v = __ldcg(src + tt);
                acc[tt][0] += v.x, acc[tt][1] += v.y, acc[tt][2] += v.z, acc[tt][3] += v.w;
            }
        }
        if (threadIdx.x == 0) a.counters[ot] = 0;
    }
    if (!live) return;
    const int r_lo = rt * 16 + g;
#pragma unroll
    for (int tt = 0; tt < TT; tt++) {
        const int tok = tok0 + tt * 8 + 2 * t;
        store_out(a, tok, r_lo, acc[tt][0]);
        store_out(a, tok + 1, r_lo, acc[tt][1]);
        store_out(a, tok, r_lo + 8, acc[tt][2]);
        store_out(a, tok + 1, r_lo + 8, acc[tt][3]);
    }
}

template <int BITS, int TT> __global__ void __launch_bounds__(THREADS, 2) qmm(const Args a) {
    constexpr int TOK = 8 * TT, WPL = BITS == 4 ? 4 : 8;
    __shared__ __align__(16) uint16_t xs[2][TOK * XS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
    const int rt = blockIdx.x * WARPS + warp;
    const bool live = rt < a.n_tiles; // a warp past the last tile still helps stage x
    const int tok0 = blockIdx.y * TOK;
    const int c0 = blockIdx.z * a.chunks_per_part, c1 = min(a.n_chunks, c0 + a.chunks_per_part);

    float acc[TT][4];
#pragma unroll
    for (int tt = 0; tt < TT; tt++) acc[tt][0] = acc[tt][1] = acc[tt][2] = acc[tt][3] = 0.0f;

    // x[tok0 .. tok0 + TOK)[64 c ..+64) -> xs[buf]: tokens past m and columns past k are zeros
    auto stage = [&](int buf, int c) {
        for (int i = threadIdx.x; i < TOK * 8; i += THREADS) {
            const int row = i / 8, piece = i % 8, tok = tok0 + row, col = c * 64 + piece * 8;
            const bool ok = tok < a.m && col < a.k;
            cp_async16(smem_u32(&xs[buf][row * XS + piece * 8]), ok ? a.x + (size_t)tok * a.k + col : a.x, ok ? 16 : 0);
        }
        cp_async_commit();
    };

    uint32_t w[WPL] = {}, sm_lo = 0, sm_hi = 0;
    if (live) load_chunk<BITS>(a, rt, c0, lane, w, sm_lo, sm_hi);
    stage(0, c0);
    for (int c = c0; c < c1; c++) {
        const int buf = (c - c0) & 1;
        uint32_t wn[WPL] = {}, sn_lo = 0, sn_hi = 0;
        if (live && c + 1 < c1) load_chunk<BITS>(a, rt, c + 1, lane, wn, sn_lo, sn_hi);
        if (c + 1 < c1) {
            stage(buf ^ 1, c + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (live) {
            uint32_t af[4][4];
            qf_frags(BITS, af, w, sm_lo, sm_hi);
#pragma unroll
            for (int tt = 0; tt < TT; tt++) {
                // lane t's activations of token g: 16 columns from qf_x_col (qfrag.h)
                const uint16_t *xr = &xs[buf][(tt * 8 + g) * XS + (qf_x_col(c, lane) - c * 64)];
                const uint4 b0 = *reinterpret_cast<const uint4 *>(xr), b1 = *reinterpret_cast<const uint4 *>(xr + 8);
                mma_bf16(acc[tt], af[0], b0.x, b0.y);
                mma_bf16(acc[tt], af[1], b0.z, b0.w);
                mma_bf16(acc[tt], af[2], b1.x, b1.y);
                mma_bf16(acc[tt], af[3], b1.z, b1.w);
            }
        }
        __syncthreads(); // xs[buf] is restaged two chunks on
#pragma unroll
        for (int i = 0; i < WPL; i++) w[i] = wn[i];
        sm_lo = sn_lo, sm_hi = sn_hi;
    }

    finish<TT>(a, acc, rt, live, tok0);
}

// The decode GEMV (m <= 8, one 8-token tile): the same CTAs, fragments, split and fix-up as
// qmm<BITS, 1>, but every warp keeps PF chunks of its codes in flight (a register ring,
// refilled as each chunk is used: 2 KB a warp for int4, against qmm's one chunk ahead), and the
// CTA stages the activations of all its chunks (m tokens x its part of k, a few KB) in shared
// memory once, before the loop, so no barrier stalls the stream of weights. When they do not
// fit the shared memory it was launched with (x_staged false), each lane reads its token's 16
// activations from global memory instead (x is small and hot in L2).
template <int BITS> __global__ void __launch_bounds__(THREADS, 2) qgemv(const Args a, bool x_staged) {
    extern __shared__ __align__(16) uint16_t xall[]; // (m, chunks of the part x 64) when staged
    constexpr int WPL = BITS == 4 ? 4 : 8, PF = 4;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
    const int rt = blockIdx.x * WARPS + warp;
    const bool live = rt < a.n_tiles;
    const int c0 = blockIdx.z * a.chunks_per_part, c1 = min(a.n_chunks, c0 + a.chunks_per_part);
    float acc[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    const int span = (c1 - c0) * 64; // staged columns per token
    if (x_staged) { // every thread, live or not: one barrier, before the stream
        for (int i = threadIdx.x; i < a.m * (span / 8); i += THREADS) {
            const int tok = i / (span / 8), piece = i % (span / 8), col = c0 * 64 + piece * 8;
            const bool ok = col < a.k;
            cp_async16(smem_u32(&xall[tok * span + piece * 8]), ok ? a.x + (size_t)tok * a.k + col : a.x, ok ? 16 : 0);
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
    }
    if (live) {
        uint32_t w[PF][WPL], slo[PF], shi[PF];
#pragma unroll
        for (int j = 0; j < PF; j++)
            if (c0 + j < c1) load_chunk<BITS>(a, rt, c0 + j, lane, w[j], slo[j], shi[j]);
        const uint16_t *xg = g < a.m ? a.x + (size_t)g * a.k : nullptr; // this lane's token
        for (int cb = c0; cb < c1; cb += PF) {
#pragma unroll
            for (int j = 0; j < PF; j++) {
                const int c = cb + j;
                if (c >= c1) break;
                const int col = qf_x_col(c, lane);
                uint4 b0 = make_uint4(0, 0, 0, 0), b1 = b0;
                if (xg && x_staged) { // staged past k as zeros
                    const uint16_t *xr = &xall[g * span + col - c0 * 64];
                    b0 = *reinterpret_cast<const uint4 *>(xr);
                    b1 = *reinterpret_cast<const uint4 *>(xr + 8);
                } else if (xg && col < a.k) { // a lane's 16 columns are all in k or all past it
                    b0 = __ldg(reinterpret_cast<const uint4 *>(xg + col));
                    b1 = __ldg(reinterpret_cast<const uint4 *>(xg + col + 8));
                }
                uint32_t af[4][4];
                qf_frags(BITS, af, w[j], slo[j], shi[j]);
                if (c + PF < c1) load_chunk<BITS>(a, rt, c + PF, lane, w[j], slo[j], shi[j]);
                mma_bf16(acc[0], af[0], b0.x, b0.y);
                mma_bf16(acc[0], af[1], b0.z, b0.w);
                mma_bf16(acc[0], af[2], b1.x, b1.y);
                mma_bf16(acc[0], af[3], b1.z, b1.w);
            }
        }
    }
    finish<1>(a, acc, rt, live, 0);
}

// Row tiles [rt0, rt1) of the packed matrix -> w (rows from rt0 * 16, k columns) bf16, with
// the fragments the matmul makes (the same weights, bit for bit). One thread per lane-cell.
template <int BITS> __global__ void qunpack(uint16_t *w, const Args a, int rt0, int rt1) {
    constexpr int WPL = BITS == 4 ? 4 : 8;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = (int)(idx % 32), c = (int)(idx / 32 % a.n_chunks);
    const int rt = rt0 + (int)(idx / 32 / a.n_chunks);
    if (rt >= rt1) return;
    uint32_t wq[WPL], sm_lo, sm_hi, af[4][4];
    load_chunk<BITS>(a, rt, c, lane, wq, sm_lo, sm_hi);
    qf_frags(BITS, af, wq, sm_lo, sm_hi);
    const int g = lane / 4, r_lo = rt * 16 + g - rt0 * 16, r_hi = r_lo + 8;
    const bool lo_ok = rt * 16 + g < a.n, hi_ok = rt * 16 + g + 8 < a.n;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int kc = qf_x_col(c, lane) + 4 * j;
        if (kc >= a.k) break;
        if (lo_ok) {
            *reinterpret_cast<uint32_t *>(w + (size_t)r_lo * a.k + kc) = af[j][0];
            *reinterpret_cast<uint32_t *>(w + (size_t)r_lo * a.k + kc + 2) = af[j][2];
        }
        if (hi_ok) {
            *reinterpret_cast<uint32_t *>(w + (size_t)r_hi * a.k + kc) = af[j][1];
            *reinterpret_cast<uint32_t *>(w + (size_t)r_hi * a.k + kc + 2) = af[j][3];
        }
    }
}

__device__ __forceinline__ float bf16_round(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// Quantisation, step 1: one thread per (row, group) writes the scale word.
__global__ void qscales(uint32_t *scales, const uint16_t *w, int bits, int n, int k, int group, int n_groups) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int ng = k / group;
    if (idx >= (int64_t)n * ng) return;
    const int r = (int)(idx / ng), b = (int)(idx % ng);
    const __nv_bfloat16 *p = reinterpret_cast<const __nv_bfloat16 *>(w) + (size_t)r * k + (size_t)b * group;
    float lo = INFINITY, hi = -INFINITY, amax = 0.0f;
    for (int i = 0; i < group; i++) {
        const float v = __bfloat162float(p[i]);
        lo = fminf(lo, v), hi = fmaxf(hi, v), amax = fmaxf(amax, fabsf(v));
    }
    const float s = bf16_round(bits == 4 ? (hi - lo) / 15.0f : amax / 127.0f), m = bits == 4 ? bf16_round(lo) : 0.0f;
    const __nv_bfloat16 sb = __float2bfloat16_rn(s), mb = __float2bfloat16_rn(m);
    scales[((size_t)(r / 16) * n_groups + b) * 16 + r % 16] =
        (uint32_t)__bfloat16_as_ushort(sb) | (uint32_t)__bfloat16_as_ushort(mb) << 16;
}

// Quantisation, step 2: one thread per lane-cell picks its codes against the stored scales.
__global__ void qcodes(uint32_t *codes, const uint32_t *scales, const uint16_t *w, int bits, int n, int k,
                       int n_tiles, int n_chunks, int n_groups, int group) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n_tiles * n_chunks * 32) return;
    const int lane = (int)(idx % 32), c = (int)(idx / 32 % n_chunks), rt = (int)(idx / 32 / n_chunks);
    const int g = lane / 4, wpl = qf_words(bits);
    uint32_t out[8] = {};
    for (int hi = 0; hi < 2; hi++) {
        const int r = rt * 16 + g + 8 * hi;
        if (r >= n) continue;
        for (int cc = 0; cc < 16; cc++) {
            const int col = qf_x_col(c, lane) + cc;
            if (col >= k) break;
            const uint32_t sm = scales[qf_scale_index(rt, c, lane, n_groups, group) + 8 * hi];
            const float s = __uint_as_float(sm << 16), m = __uint_as_float(sm & 0xffff0000u);
            const float v = __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(w)[(size_t)r * k + col]);
            const int q = bits == 4 ? (s > 0.0f ? min(15, max(0, __float2int_rn((v - m) / s))) : 0)
                                    : (s > 0.0f ? min(127, max(-127, __float2int_rn(v / s))) : 0);
            int shift;
            const int word = qf_elem_word(bits, hi, cc, &shift);
            out[word] |= (uint32_t)(q & (bits == 4 ? 15 : 255)) << shift;
        }
    }
    for (int i = 0; i < wpl; i++) codes[qf_code_index(rt, c, lane, n_chunks, bits) + i] = out[i];
}

int tt_of(int m) { return m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8; }

// Grid x (CTAs across n) and the split of the chunks: about 4 CTAs per SM counting the parts,
// at least 4 chunks (256 columns) per part, no empty part.
struct Split {
    int grid_x, parts, per_part;
};
Split split_of(const cs_qpack_dims *d) {
    Split s;
    s.grid_x = (int)((d->n_tiles + WARPS - 1) / WARPS);
    const int n_chunks = (int)d->n_chunks;
    int parts = (4 * cs_cuda_sm_count() + s.grid_x - 1) / s.grid_x;
    parts = min(parts, max(1, n_chunks / 4));
    parts = max(parts, 1);
    s.per_part = (n_chunks + parts - 1) / parts;
    s.parts = (n_chunks + s.per_part - 1) / s.per_part;
    return s;
}

size_t partial_bytes(const cs_qpack_dims *d, int m) {
    const Split s = split_of(d);
    if (s.parts == 1) return 0;
    const int tok = 8 * tt_of(m), grid_y = (m + tok - 1) / tok;
    return (size_t)s.parts * s.grid_x * grid_y * ROWS * tok * sizeof(float);
}

size_t slice_rows(const cs_qpack_dims *d) { // whole row tiles of bf16 in SLICE_BYTES, at least one, at most all
    size_t tiles = SLICE_BYTES / ((size_t)d->k * 2 * 16);
    if (tiles < 1) tiles = 1;
    if (tiles > (size_t)d->n_tiles) tiles = (size_t)d->n_tiles;
    return tiles * 16;
}

Args args_of(const cs_cuda_qmat *w, void *out, int out_f32, const uint16_t *x, int m) {
    Args a = {};
    a.out = out;
    a.x = x;
    a.codes = w->codes;
    a.scales = w->scales;
    a.out_f32 = out_f32;
    a.m = m;
    a.n = (int)w->d.n;
    a.k = (int)w->d.k;
    a.n_tiles = (int)w->d.n_tiles;
    a.n_chunks = (int)w->d.n_chunks;
    a.n_groups = (int)w->d.n_groups;
    a.group = w->d.group;
    return a;
}

template <int BITS> void launch_mma(Args a, int m, const Split &s, cudaStream_t st) {
    const int tt = tt_of(m), tok = 8 * tt;
    const dim3 grid((unsigned)s.grid_x, (unsigned)((m + tok - 1) / tok), (unsigned)s.parts);
    switch (tt) {
    case 1: qmm<BITS, 1><<<grid, THREADS, 0, st>>>(a); break;
    case 2: qmm<BITS, 2><<<grid, THREADS, 0, st>>>(a); break;
    case 4: qmm<BITS, 4><<<grid, THREADS, 0, st>>>(a); break;
    default: qmm<BITS, 8><<<grid, THREADS, 0, st>>>(a); break;
    }
}

// Activations staged up to this: the default 48 KB per CTA (no opt-in) holds the dynamic
// buffer and the kernel's static shared memory (finish's flag), so leave room for the latter.
constexpr size_t GEMV_X_SMEM = (48 << 10) - 1024;

template <int BITS> void launch_gemv(Args a, int m, const Split &s, cudaStream_t st) {
    const dim3 grid((unsigned)s.grid_x, 1u, (unsigned)s.parts);
    const size_t x_bytes = (size_t)m * s.per_part * 64 * 2;
    const bool staged = x_bytes <= GEMV_X_SMEM;
    qgemv<BITS><<<grid, THREADS, staged ? x_bytes : 0, st>>>(a, staged);
}

void unpack_rows(uint16_t *w, const Args &a, int bits, int rt0, int rt1, cudaStream_t st) {
    const int64_t cells = (int64_t)(rt1 - rt0) * a.n_chunks * 32;
    const unsigned blocks = (unsigned)((cells + 255) / 256);
    if (bits == 4) qunpack<4><<<blocks, 256, 0, st>>>(w, a, rt0, rt1);
    else qunpack<8><<<blocks, 256, 0, st>>>(w, a, rt0, rt1);
    CUDA_CHECK(cudaGetLastError());
}

} // namespace

extern "C" int cs_cuda_qmatmul_path_for(int m) {
    return m <= 8 ? CS_CUDA_QPATH_GEMV : m >= CUBLAS_MIN_M ? CS_CUDA_QPATH_CUBLAS : CS_CUDA_QPATH_MMA;
}

extern "C" size_t cs_cuda_qmatmul_workspace(const cs_qpack_dims *w, int max_m, int path) {
    CS_ASSERT(max_m >= 1);
    size_t body = 0;
    // AUTO runs the MMA kernel below CUBLAS_MIN_M only: its split-K partials for larger m
    // would be wasted memory (2 GiB at Llama-3-8B's widths and 8192 tokens)
    if (path == CS_CUDA_QPATH_MMA) body = partial_bytes(w, max_m);
    else if (path == CS_CUDA_QPATH_GEMV) body = partial_bytes(w, max_m < 8 ? max_m : 8);
    else if (path == CS_CUDA_QPATH_AUTO) body = partial_bytes(w, max_m < CUBLAS_MIN_M ? max_m : CUBLAS_MIN_M - 1);
    if (path == CS_CUDA_QPATH_CUBLAS || (path == CS_CUDA_QPATH_AUTO && max_m >= CUBLAS_MIN_M)) {
        const size_t scratch = slice_rows(w) * (size_t)w->k * 2;
        if (scratch > body) body = scratch;
    }
    return COUNTER_BYTES + body;
}

extern "C" void cs_cuda_qmatmul(cs_cuda_blas *h, void *out, int out_f32, const uint16_t *x, const cs_cuda_qmat *w,
                                int m, void *workspace, size_t workspace_bytes, int path) {
    CS_ASSERT(h && w && m >= 1 && (w->d.bits == 4 || w->d.bits == 8));
    CS_ASSERT(((uintptr_t)x & 15) == 0 && ((uintptr_t)w->codes & 15) == 0 && ((uintptr_t)workspace & 15) == 0);
    CS_ASSERT(w->d.k % 32 == 0 && w->d.n <= INT32_MAX && w->d.k <= INT32_MAX);
    cudaStream_t st = static_cast<cudaStream_t>(cs_cuda_blas_stream(h));
    if (path == CS_CUDA_QPATH_AUTO) path = cs_cuda_qmatmul_path_for(m);
    Args a = args_of(w, out, out_f32, x, m);
    if (path == CS_CUDA_QPATH_CUBLAS) {
        uint16_t *scratch = reinterpret_cast<uint16_t *>(static_cast<char *>(workspace) + COUNTER_BYTES);
        // whole row tiles of bf16 in what the workspace holds, up to a slice
        CS_ASSERT(workspace_bytes >= COUNTER_BYTES + (size_t)16 * w->d.k * 2);
        size_t fit = (workspace_bytes - COUNTER_BYTES) / ((size_t)w->d.k * 2) / 16 * 16;
        const int rows = (int)(fit < slice_rows(&w->d) ? fit : slice_rows(&w->d));
        for (int r0 = 0; r0 < a.n; r0 += rows) {
            const int nr = min(rows, a.n - r0);
            unpack_rows(scratch, a, w->d.bits, r0 / 16, (r0 + nr + 15) / 16, st);
            char *o = static_cast<char *>(out) + (size_t)r0 * (out_f32 ? 4 : 2);
            cs_cuda_gemm_ldo(h, o, out_f32, a.n, x, scratch, m, nr, a.k);
        }
        return;
    }
    const Split s = split_of(&w->d);
    a.counters = static_cast<unsigned *>(workspace);
    a.partials = reinterpret_cast<float *>(static_cast<char *>(workspace) + COUNTER_BYTES);
    a.chunks_per_part = s.per_part;
    a.n_parts = s.parts;
    if (s.parts > 1) {
        const int tok = 8 * tt_of(m);
        CS_ASSERT((size_t)s.grid_x * ((m + tok - 1) / tok) <= (size_t)MAX_COUNTERS);
        CS_ASSERT(workspace_bytes >= COUNTER_BYTES + partial_bytes(&w->d, m));
    }
    if (path == CS_CUDA_QPATH_GEMV) {
        CS_ASSERT(m <= 8);
        if (w->d.bits == 4) launch_gemv<4>(a, m, s, st);
        else launch_gemv<8>(a, m, s, st);
    } else if (w->d.bits == 4) {
        launch_mma<4>(a, m, s, st);
    } else {
        launch_mma<8>(a, m, s, st);
    }
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void cs_cuda_qunpack_bf16(uint16_t *w, const cs_cuda_qmat *q, void *stream) {
    CS_ASSERT(((uintptr_t)w & 3) == 0 && ((uintptr_t)q->codes & 15) == 0); // codes: 16-byte loads
    Args a = args_of(q, NULL, 0, NULL, 1);
    unpack_rows(w, a, q->d.bits, 0, a.n_tiles, static_cast<cudaStream_t>(stream));
}

extern "C" void cs_cuda_qquantize(uint32_t *codes, uint32_t *scales, const cs_qpack_dims *d, const uint16_t *w,
                                  void *stream) {
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    CUDA_CHECK(cudaMemsetAsync(codes, 0, d->code_words * 4, st));
    CUDA_CHECK(cudaMemsetAsync(scales, 0, d->scale_words * 4, st));
    const int64_t n_sc = d->n * (d->k / d->group);
    qscales<<<(unsigned)((n_sc + 255) / 256), 256, 0, st>>>(scales, w, d->bits, (int)d->n, (int)d->k, d->group,
                                                           (int)d->n_groups);
    CUDA_CHECK(cudaGetLastError());
    const int64_t cells = d->n_tiles * d->n_chunks * 32;
    qcodes<<<(unsigned)((cells + 255) / 256), 256, 0, st>>>(codes, scales, w, d->bits, (int)d->n, (int)d->k,
                                                           (int)d->n_tiles, (int)d->n_chunks, (int)d->n_groups,
                                                           d->group);
    CUDA_CHECK(cudaGetLastError());
}
