// Residual add fused with RMSNorm: x[r] += y[r] (fp32 residual stream, bf16 sub-layer
// output), then out[i] = bf16(w * (x[r] * inv)) with inv = 1 / sqrtf(mean(x[r]^2) + eps).
//
// One CTA per output row. Each thread owns VPT chunks of 8 elements (chunk c = tid + k *
// blockDim) and keeps them in registers between the sum of squares and the scaling, so x is
// read once and written once. Loads and stores are 16 bytes wide (dim % 8 == 0). The sum of
// squares is fp32: a warp shuffle tree, then one value per warp through shared memory.
// Normalisation: 1.0f / sqrtf(...) (IEEE sqrt and divide, no rsqrtf approximation), then the
// same two rounded products as cs_cpu_rmsnorm, w * (x * inv); the reference sums in double,
// so outputs agree to within one bf16 rounding.
#include <cuda_bf16.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

constexpr int kMaxThreads = 256;
constexpr int kMaxVpt = 8; // 256 threads x 8 chunks x 8 = dim 16384 at most

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); // .x (low half) = lo
    return *reinterpret_cast<const uint32_t *>(&v);
}

// Sum over the block; every thread gets the total. blockDim.x is a multiple of 32, at most
// 1024; all threads must call it. Each warp re-reduces the per-warp partials itself, so one
// __syncthreads suffices (warp_sums is written once per launch).
__device__ __forceinline__ float block_sum(float v, float *warp_sums) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = lane < n_warps ? warp_sums[lane] : 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

template <int VPT>
__global__ void __launch_bounds__(kMaxThreads)
rmsnorm_rows(uint16_t *__restrict__ out, float *__restrict__ x, const uint16_t *__restrict__ y,
             const float *__restrict__ w, const int32_t *__restrict__ rows, int dim, float eps) {
    __shared__ float warp_sums[32];
    const int i = blockIdx.x;
    const size_t r = rows ? (size_t)rows[i] : (size_t)i;
    const int n8 = dim / 8;
    float4 *xr = reinterpret_cast<float4 *>(x + r * (size_t)dim);
    const uint4 *yr = y ? reinterpret_cast<const uint4 *>(y + r * (size_t)dim) : nullptr;

    float v[VPT][8];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < VPT; k++) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c < n8) {
            const float4 a = xr[2 * c], b = xr[2 * c + 1];
            v[k][0] = a.x; v[k][1] = a.y; v[k][2] = a.z; v[k][3] = a.w;
            v[k][4] = b.x; v[k][5] = b.y; v[k][6] = b.z; v[k][7] = b.w;
            if (yr) {
                const uint4 q = yr[c];
                v[k][0] += bf16_lo(q.x); v[k][1] += bf16_hi(q.x);
                v[k][2] += bf16_lo(q.y); v[k][3] += bf16_hi(q.y);
                v[k][4] += bf16_lo(q.z); v[k][5] += bf16_hi(q.z);
                v[k][6] += bf16_lo(q.w); v[k][7] += bf16_hi(q.w);
                xr[2 * c] = make_float4(v[k][0], v[k][1], v[k][2], v[k][3]);
                xr[2 * c + 1] = make_float4(v[k][4], v[k][5], v[k][6], v[k][7]);
            }
#pragma unroll
            for (int e = 0; e < 8; e++) ss += v[k][e] * v[k][e];
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) v[k][e] = 0.0f;
        }
    }
    ss = block_sum(ss, warp_sums);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);

    uint4 *o = reinterpret_cast<uint4 *>(out + (size_t)i * (size_t)dim);
    const float4 *w4 = reinterpret_cast<const float4 *>(w);
#pragma unroll
    for (int k = 0; k < VPT; k++) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c < n8) {
            const float4 wa = w4[2 * c], wb = w4[2 * c + 1];
            o[c] = make_uint4(pack_bf16x2(wa.x * (v[k][0] * inv), wa.y * (v[k][1] * inv)),
                              pack_bf16x2(wa.z * (v[k][2] * inv), wa.w * (v[k][3] * inv)),
                              pack_bf16x2(wb.x * (v[k][4] * inv), wb.y * (v[k][5] * inv)),
                              pack_bf16x2(wb.z * (v[k][6] * inv), wb.w * (v[k][7] * inv)));
        }
    }
}

} // namespace

// rows (when given) must name distinct rows: two CTAs adding y into the same x row would race.
extern "C" void cs_cuda_rmsnorm(uint16_t *out, float *x, const uint16_t *y, const float *w,
                                const int32_t *rows, int n, int dim, float eps, void *stream) {
    CS_ASSERT(n >= 0 && dim > 0 && dim % 8 == 0 && dim <= kMaxThreads * kMaxVpt * 8);
    CS_ASSERT(((uintptr_t)out & 15) == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)y & 15) == 0 &&
              ((uintptr_t)w & 15) == 0 && ((uintptr_t)rows & 3) == 0);
    if (n == 0) return;
    const int n8 = dim / 8;
    // the fewest chunks per thread that fit in 256 threads, then the fewest whole warps
    int vpt = 1;
    while (vpt * kMaxThreads < n8) vpt *= 2;
    const int per = (n8 + vpt - 1) / vpt;
    const int threads = (per + 31) / 32 * 32;
    CS_ASSERT(vpt <= kMaxVpt && threads <= kMaxThreads && threads * vpt >= n8);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const dim3 grid((unsigned)n), block((unsigned)threads);
    switch (vpt) {
    case 1: rmsnorm_rows<1><<<grid, block, 0, s>>>(out, x, y, w, rows, dim, eps); break;
    case 2: rmsnorm_rows<2><<<grid, block, 0, s>>>(out, x, y, w, rows, dim, eps); break;
    case 4: rmsnorm_rows<4><<<grid, block, 0, s>>>(out, x, y, w, rows, dim, eps); break;
    case 8: rmsnorm_rows<8><<<grid, block, 0, s>>>(out, x, y, w, rows, dim, eps); break;
    default: CS_ASSERT(0 && "unreachable");
    }
    CUDA_CHECK(cudaGetLastError());
}
