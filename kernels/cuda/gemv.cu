// bf16 GEMV for decode-sized batches: out (m, n) = x (m, k) @ w^T, m <= CS_CUDA_GEMV_MAX_M,
// w (n, k) bf16 row-major, fp32 accumulation, out bf16 or fp32. A decode step is bound by
// reading the weights once; cuBLAS reads a K=4096 N=14336 matrix at M=1 in 56 us on an H200
// (2.1 TB/s, half the copy rate), so the small-M projections and lm_head come here.
//
// One CTA of 8 warps per R = 4 rows: each warp takes an eighth of k, its lanes 16 bytes (8
// weights) of each of the 4 rows per load, two loads deep, so that a CTA keeps 32 KB of weight
// loads in flight; the x values of those 8 columns (MT tokens, from L1/L2: x is small and every
// CTA reads it) are loaded once for the 4 rows. Products are summed in fp32: per lane, then
// across the warp (shuffles), then across the 8 warps in shared memory in warp order, so the
// result does not depend on timing. MT, the tokens a kernel is built for, is 1, 2, 4 or 8 (the
// smallest that holds m; tokens past m are neither read nor written).
#include <cuda_bf16.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

constexpr int NW = 8;  // warps per CTA
constexpr int R = 4;   // rows per CTA
constexpr int DEPTH = 2; // 16-byte loads per row in flight per lane

__device__ __forceinline__ float lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// The dot product of 8 weights and 8 activations, both bf16 in a uint4, added to acc.
__device__ __forceinline__ float dot8(const uint4 &w, const uint4 &x, float acc) {
    acc = fmaf(lo(w.x), lo(x.x), acc);
    acc = fmaf(hi(w.x), hi(x.x), acc);
    acc = fmaf(lo(w.y), lo(x.y), acc);
    acc = fmaf(hi(w.y), hi(x.y), acc);
    acc = fmaf(lo(w.z), lo(x.z), acc);
    acc = fmaf(hi(w.z), hi(x.z), acc);
    acc = fmaf(lo(w.w), lo(x.w), acc);
    acc = fmaf(hi(w.w), hi(x.w), acc);
    return acc;
}

// Weights are read once: keep them out of L1 and let them stream.
__device__ __forceinline__ uint4 load_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

template <int MT, bool F32>
__global__ void __launch_bounds__(NW * 32) gemv(void *__restrict__ out, const uint16_t *__restrict__ x,
                                               const uint16_t *__restrict__ w, int m, int n, int k) {
    __shared__ float part[NW][R * MT];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row0 = blockIdx.x * R;
    const int k8 = k / 8;                          // 16-byte columns per row
    const int per_warp = (k8 + NW - 1) / NW;       // this warp's columns: [c0, c1)
    const int c0 = warp * per_warp, c1 = min(c0 + per_warp, k8);
    const uint4 *wv = reinterpret_cast<const uint4 *>(w);
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);
    float acc[R][MT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < MT; t++) acc[r][t] = 0.0f;
    // rows past n read row n - 1 (in bounds) and are never stored
    int64_t rbase[R];
#pragma unroll
    for (int r = 0; r < R; r++) rbase[r] = (int64_t)min(row0 + r, n - 1) * k8;
    for (int c = c0 + lane; c < c1; c += 32 * DEPTH) {
        uint4 wr[DEPTH][R];
#pragma unroll
        for (int d = 0; d < DEPTH; d++) {
            const int cc = c + d * 32;
#pragma unroll
            for (int r = 0; r < R; r++) wr[d][r] = cc < c1 ? load_stream(wv + rbase[r] + cc) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int d = 0; d < DEPTH; d++) {
            const int cc = c + d * 32;
            if (cc >= c1) break;
#pragma unroll
            for (int t = 0; t < MT; t++) {
                if (t >= m) break;
                const uint4 xt = __ldg(xv + (int64_t)t * k8 + cc);
#pragma unroll
                for (int r = 0; r < R; r++) acc[r][t] = dot8(wr[d][r], xt, acc[r][t]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < MT; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) part[warp][r * MT + t] = v;
        }
    __syncthreads();
    if (threadIdx.x < R * MT) {
        const int r = threadIdx.x / MT, t = threadIdx.x % MT, row = row0 + r;
        if (row < n && t < m) {
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < NW; i++) s += part[i][threadIdx.x];
            if (F32) static_cast<float *>(out)[(int64_t)t * n + row] = s;
            else static_cast<uint16_t *>(out)[(int64_t)t * n + row] = __bfloat16_as_ushort(__float2bfloat16_rn(s));
        }
    }
}

template <bool F32> void launch(void *out, const uint16_t *x, const uint16_t *w, int m, int n, int k, cudaStream_t st) {
    const unsigned blocks = (unsigned)((n + R - 1) / R);
    if (m == 1) gemv<1, F32><<<blocks, NW * 32, 0, st>>>(out, x, w, m, n, k);
    else if (m == 2) gemv<2, F32><<<blocks, NW * 32, 0, st>>>(out, x, w, m, n, k);
    else if (m <= 4) gemv<4, F32><<<blocks, NW * 32, 0, st>>>(out, x, w, m, n, k);
    else gemv<8, F32><<<blocks, NW * 32, 0, st>>>(out, x, w, m, n, k);
}

} // namespace

extern "C" void cs_cuda_gemv(void *out, int out_f32, const uint16_t *x, const uint16_t *w, int m, int n, int k,
                             void *stream) {
    CS_ASSERT(m >= 1 && m <= CS_CUDA_GEMV_MAX_M && n >= 1 && k >= 8 && k % 8 == 0);
    CS_ASSERT(((uintptr_t)x & 15) == 0 && ((uintptr_t)w & 15) == 0);
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (out_f32) launch<true>(out, x, w, m, n, k, st);
    else launch<false>(out, x, w, m, n, k, st);
    CUDA_CHECK(cudaGetLastError());
}
